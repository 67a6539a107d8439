//! A plugin of any contract line this host runs, as one type: its calls take and
//! return the current contract's types. This file is the only place that matches on
//! the line; what a line differs in lives in its own `since_v*` module.

use super::adapt::{Adapt, AdaptResult};
use super::types::{Check, FieldError, Page, PluginError, PluginInfo, RunMode, RunPlan, RunRequest, Setting};
use super::{since_v0_2, since_v0_3, since_v0_4, Line};
use crate::plugin_state::PluginState;
use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::Store;

/// Links every contract line's imports, each under its own versioned names.
pub(crate) fn link(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    since_v0_4::ConnectorPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)?;
    since_v0_3::ConnectorPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)?;
    since_v0_2::ConnectorPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)?;
    // The current contract's `emit-vulnerabilities` reads the plugin's strings in
    // place instead of lifting them (the generated binding would): it replaces the
    // generated definition.
    linker.allow_shadowing(true);
    linker
        .instance(&format!("vulnbridge:connector/output@{}", super::CONTRACT_VERSION))?
        .func_wrap("emit-vulnerabilities", crate::capability::output::emit_vulnerabilities_in_place)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A plugin ready to instantiate.
pub(crate) enum Pre {
    V0_4(since_v0_4::ConnectorPluginPre<PluginState>),
    V0_3(since_v0_3::ConnectorPluginPre<PluginState>),
    V0_2(since_v0_2::ConnectorPluginPre<PluginState>),
}

impl Pre {
    /// The plugin's exports typed for its line.
    pub(crate) fn new(line: Line, pre: InstancePre<PluginState>) -> wasmtime::Result<Pre> {
        Ok(match line {
            Line::V0_4 => Pre::V0_4(since_v0_4::ConnectorPluginPre::new(pre)?),
            Line::V0_3 => Pre::V0_3(since_v0_3::ConnectorPluginPre::new(pre)?),
            Line::V0_2 => Pre::V0_2(since_v0_2::ConnectorPluginPre::new(pre)?),
        })
    }

    /// A fresh instance in `store`.
    pub(crate) fn instantiate(&self, store: &mut Store<PluginState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V0_4(pre) => Instance::V0_4(pre.instantiate(store)?),
            Pre::V0_3(pre) => Instance::V0_3(pre.instantiate(store)?),
            Pre::V0_2(pre) => Instance::V0_2(pre.instantiate(store)?),
        })
    }
}

/// A plugin instance.
pub(crate) enum Instance {
    V0_4(since_v0_4::ConnectorPlugin),
    V0_3(since_v0_3::ConnectorPlugin),
    V0_2(since_v0_2::ConnectorPlugin),
}

type PluginStore = Store<PluginState>;

impl Instance {
    /// The contract line it runs through.
    pub(crate) fn line(&self) -> Line {
        match self {
            Instance::V0_4(_) => Line::V0_4,
            Instance::V0_3(_) => Line::V0_3,
            Instance::V0_2(_) => Line::V0_2,
        }
    }

    /// `info`, read as the current contract's.
    pub(crate) fn info(&self, store: &mut PluginStore) -> wasmtime::Result<PluginInfo> {
        match self {
            Instance::V0_4(b) => b.vulnbridge_connector_connector().call_info(store),
            Instance::V0_3(b) => b.vulnbridge_connector_connector().call_info(store).map(since_v0_3::adapt_info),
            Instance::V0_2(b) => b.vulnbridge_connector_connector().call_info(store).map(since_v0_2::adapt_info),
        }
    }

    /// `configure`: the origins the plugin uses (0.3 on: within what it declared;
    /// 0.2: what it derived), or its field errors.
    pub(crate) fn configure(
        &self,
        store: &mut PluginStore,
        settings: &[Setting],
    ) -> wasmtime::Result<Result<Vec<String>, Vec<FieldError>>> {
        match self {
            Instance::V0_4(b) => b.vulnbridge_connector_connector().call_configure(store, settings),
            Instance::V0_3(b) => b
                .vulnbridge_connector_connector()
                .call_configure(store, &settings.to_vec().adapt())
                .map(|r| r.map_err(Adapt::adapt)),
            Instance::V0_2(b) => b
                .vulnbridge_connector_connector()
                .call_configure(store, &settings.to_vec().adapt())
                .map(|r| r.map_err(Adapt::adapt)),
        }
    }

    /// `verify`.
    pub(crate) fn verify(&self, store: &mut PluginStore) -> wasmtime::Result<Result<Vec<Check>, PluginError>> {
        match self {
            Instance::V0_4(b) => b.vulnbridge_connector_connector().call_verify(store),
            Instance::V0_3(b) => b.vulnbridge_connector_connector().call_verify(store).map(|r| r.adapt_result()),
            Instance::V0_2(b) => b.vulnbridge_connector_connector().call_verify(store).map(|r| r.adapt_result()),
        }
    }

    /// `start` (0.4 on). Before 0.4 a plugin had no state and every run was full.
    pub(crate) fn start(
        &self,
        store: &mut PluginStore,
        request: &RunRequest,
    ) -> wasmtime::Result<Result<RunPlan, PluginError>> {
        match self {
            Instance::V0_4(b) => b.vulnbridge_connector_connector().call_start(store, request),
            Instance::V0_3(_) | Instance::V0_2(_) => Ok(Ok(RunPlan { mode: RunMode::Full, reason: None })),
        }
    }

    /// `fetch`.
    pub(crate) fn fetch(&self, store: &mut PluginStore) -> wasmtime::Result<Result<Option<Page>, PluginError>> {
        match self {
            Instance::V0_4(b) => b.vulnbridge_connector_connector().call_fetch(store),
            Instance::V0_3(b) => b.vulnbridge_connector_connector().call_fetch(store).map(|r| r.adapt_result()),
            Instance::V0_2(b) => b.vulnbridge_connector_connector().call_fetch(store).map(|r| r.adapt_result()),
        }
    }

    /// `finish` (0.4 on): the state to keep. Before 0.4, none.
    pub(crate) fn finish(&self, store: &mut PluginStore) -> wasmtime::Result<Result<Option<Vec<u8>>, PluginError>> {
        match self {
            Instance::V0_4(b) => b.vulnbridge_connector_connector().call_finish(store),
            Instance::V0_3(_) | Instance::V0_2(_) => Ok(Ok(None)),
        }
    }

    /// `map`.
    pub(crate) fn map(&self, store: &mut PluginStore, page: &Page) -> wasmtime::Result<Result<(), PluginError>> {
        match self {
            Instance::V0_4(b) => b.vulnbridge_connector_connector().call_map(store, page),
            Instance::V0_3(b) => b
                .vulnbridge_connector_connector()
                .call_map(store, &page.clone().adapt())
                .map(|r| r.map_err(Adapt::adapt)),
            Instance::V0_2(b) => b
                .vulnbridge_connector_connector()
                .call_map(store, &page.clone().adapt())
                .map(|r| r.map_err(Adapt::adapt)),
        }
    }
}

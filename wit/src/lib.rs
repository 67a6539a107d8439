//! The SDK for connector plugins of the `vulnbridge:connector` contract.
//!
//! This crate owns the contract: the WIT files beside its manifest are the contract,
//! and the bindings are generated from them here, once, so a plugin never runs
//! `wit-bindgen` itself. A plugin implements [`Connector`] and exports it with
//! [`export_connector!`]:
//!
//! ```
//! use connector_sdk::types::{Check, FieldError, FieldKind, Page, PluginError, PluginInfo};
//! use connector_sdk::{config::{egress, field}, Config, Connector, Output};
//!
//! struct Example {
//!     base: String,
//! }
//!
//! impl Connector for Example {
//!     fn info() -> PluginInfo {
//!         PluginInfo {
//!             id: "example".into(),
//!             name: "Example".into(),
//!             version: "0.1.0".into(),
//!             description: "An example source.".into(),
//!             scanner_type: "Example".into(),
//!             fields: vec![field("host", "Host", "The API host.", FieldKind::Host, true, Some("api.example.com"))],
//!             egress: vec![egress("{host}", "the example API")],
//!             independent_pages: true,
//!             section: "Vulnerability Management".into(),
//!             ..Default::default()
//!         }
//!     }
//!     fn configure(config: &mut Config) -> Result<Self, Vec<FieldError>> {
//!         let base = config.base_url("host");
//!         config.finish()?;
//!         Ok(Example { base })
//!     }
//!     fn verify(&mut self) -> Result<Vec<Check>, PluginError> {
//!         Ok(vec![Check { name: "host".into(), detail: self.base.clone() }])
//!     }
//!     fn fetch(&mut self) -> Result<Option<Page>, PluginError> {
//!         Ok(None)
//!     }
//!     fn map(&mut self, _page: &Page, _out: &mut Output) -> Result<(), PluginError> {
//!         Ok(())
//!     }
//! }
//!
//! connector_sdk::export_connector!(Example);
//! # let example = connector_sdk::testing::configure::<Example>(&[]).unwrap();
//! # assert_eq!(example.base, "https://api.example.com");
//! ```
//!
//! The modules: [`config`] (typed, validated settings), [`http`] (requests through
//! the host's allow-list), [`log`] (the host's log), [`output`] (records, counters and
//! progress) and [`testing`] (run `map` natively on fixture files in unit tests).
//! Everything also compiles natively, so a plugin's logic is tested with plain
//! `cargo test`; only the host calls need the host (natively `http` refuses, `log`
//! prints to stderr and counters are kept in memory).
//!
//! The plugin author's guide is `README.md` beside this crate's manifest.

pub mod config;
pub mod http;
pub mod log;
pub mod output;
pub mod testing;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "connector-plugin",
        path: ".",
        pub_export_macro: true,
        export_macro_name: "__export_connector_world",
        default_bindings_module: "connector_sdk::bindings",
        additional_derives: [PartialEq],
    });
}

/// The contract's data types (`types.wit`), as Rust types.
///
/// Records a plugin builds implement `Default`, so that a plugin written as
/// `Locators { external_id: Some(id), ..Default::default() }` keeps compiling when a
/// later contract version adds a field.
pub mod types {
    pub use crate::bindings::vulnbridge::connector::types::*;

    // Written out: the generated types cannot take a derive from here.
    #[allow(clippy::derivable_impls)]
    impl Default for Locators {
        fn default() -> Self {
            Locators {
                external_id: None,
                hostname: None,
                fqdn: None,
                netbios: None,
                ip_address: None,
                mac_address: None,
                url: None,
                application: None,
            }
        }
    }

    // Written out: the generated types cannot take a derive from here.
    #[allow(clippy::derivable_impls)]
    impl Default for Asset {
        fn default() -> Self {
            Asset {
                key: String::new(),
                locators: Locators::default(),
                os: None,
                os_version: None,
                tags: Vec::new(),
                last_seen: None,
            }
        }
    }

    // Written out: the generated types cannot take a derive from here.
    #[allow(clippy::derivable_impls)]
    impl Default for Vulnerability {
        fn default() -> Self {
            Vulnerability {
                asset_key: String::new(),
                identifier: String::new(),
                score: 0,
                found: None,
                last_seen: None,
                details: None,
                status: VulnerabilityStatus::Open,
            }
        }
    }

    // Written out: the generated types cannot take a derive from here. With it, a
    // plugin's `info` names what it has and keeps compiling when a later contract
    // version adds to `plugin-info`.
    #[allow(clippy::derivable_impls)]
    impl Default for PluginInfo {
        fn default() -> Self {
            PluginInfo {
                id: String::new(),
                name: String::new(),
                version: String::new(),
                description: String::new(),
                scanner_type: String::new(),
                fields: Vec::new(),
                egress: Vec::new(),
                independent_pages: false,
                section: String::new(),
                counters: Vec::new(),
                incremental: false,
            }
        }
    }

    impl RunPlan {
        /// Runs as asked (the host's mode, no reason to give).
        pub fn as_asked(request: &RunRequest) -> Self {
            RunPlan { mode: request.mode, reason: None }
        }

        /// A full run, and why it is not the incremental one the host asked for.
        pub fn full(reason: impl Into<String>) -> Self {
            RunPlan { mode: RunMode::Full, reason: Some(reason.into()) }
        }
    }

    // Written out: the generated types cannot take a derive from here.
    #[allow(clippy::derivable_impls)]
    impl Default for VulnerabilityDefinition {
        fn default() -> Self {
            VulnerabilityDefinition {
                identifier: String::new(),
                name: String::new(),
                cve_ids: Vec::new(),
                description: None,
                solution: None,
            }
        }
    }

    impl Datetime {
        /// Seconds since the Unix epoch, UTC.
        pub fn from_unix(seconds: i64) -> Self {
            Datetime { seconds, nanoseconds: 0 }
        }
    }
}

pub use config::Config;
pub use output::Output;
use types::{Check, FieldError, Page, PluginError, PluginInfo, RunMode, RunPlan, RunRequest};

/// The contract version this SDK builds plugins for (the WIT package version).
pub const CONTRACT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A connector: what a plugin implements. The host calls `info` first, then
/// `configure` on a fresh instance, then either `verify` or a run: `start`, `fetch`
/// until it returns `None`, then `finish`, with `map` called on each page right after
/// it is fetched (on another instance, configured but not started).
///
/// Every method runs inside the sandbox: the only way out is [`http`], and the only
/// results are the records given to [`Output`]. A method that panics ends the call
/// with the panic message; return a [`PluginError`] instead for anything expected.
pub trait Connector: Sized + 'static {
    /// Who the plugin is and which settings it takes. Called before `configure`, and
    /// by `connector-host info`; it must not depend on settings.
    fn info() -> PluginInfo;

    /// Validates the operator's settings and builds the instance. Report every
    /// problem at once: [`Config`] gathers field errors as the settings are read.
    /// Secret settings arrive as placeholders that the host replaces in requests.
    fn configure(config: &mut Config) -> Result<Self, Vec<FieldError>>;

    /// The declared egress origins this instance uses, with `{key}` written as the
    /// field's value: e.g. only the sign-in host of the configured cloud. It narrows
    /// `info`'s declaration and can never widen it. Empty (the default): every
    /// declared origin.
    fn origins_in_use(&self) -> Vec<String> {
        Vec::new()
    }

    /// Checks credentials, permissions and reachability with as few calls as
    /// possible, and reports what was checked.
    fn verify(&mut self) -> Result<Vec<Check>, PluginError>;

    /// Begins a run: `request.mode` is what the host asks for, `request.state` what
    /// [`Connector::finish`] returned at the end of the last delivered run. Answer
    /// the mode this run has: the host's, or full with a reason when the state is
    /// missing or too old for the source ([`RunPlan::full`]). The default runs
    /// full and uses no state; a plugin that runs incrementally says so in
    /// `info().incremental` and implements this and `finish`.
    fn start(&mut self, request: RunRequest) -> Result<RunPlan, PluginError> {
        let _ = request;
        Ok(RunPlan { mode: RunMode::Full, reason: None })
    }

    /// After the last page: the state the next run's `start` receives (a watermark,
    /// a cache), or `None` to keep none. The host keeps it only once this run is
    /// delivered. The default keeps none.
    fn finish(&mut self) -> Result<Option<Vec<u8>>, PluginError> {
        Ok(None)
    }

    /// The next page of source data, or `None` when the run is complete. Keep pages
    /// as the source sent them: mapping is `map`'s job, so that it can be tested on
    /// fixture files.
    fn fetch(&mut self) -> Result<Option<Page>, PluginError>;

    /// Turns one page into records. Must not call [`http`]: everything it needs is
    /// in the page (and in `self`'s settings).
    fn map(&mut self, page: &Page, out: &mut Output) -> Result<(), PluginError>;
}

/// Exports a [`Connector`] as the plugin's implementation of the contract. Use it
/// once, at the root of the plugin crate. It does nothing in native builds (unit
/// tests), where the contract's symbols cannot exist.
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __ConnectorExport = $crate::__private::Adapter<$connector>;
    $crate::bindings::__export_connector_world!(__ConnectorExport with_types_in $crate::bindings);
        };
    };
}

#[doc(hidden)]
pub mod __private {
    //! The glue between the generated `Guest` trait and [`Connector`](crate::Connector).
    use crate::bindings::exports::vulnbridge::connector::connector::Guest;
    use crate::types::{Check, FieldError, Page, PluginError, PluginInfo, RunPlan, RunRequest, Setting};
    use crate::{Config, Connector, Output};
    use std::any::Any;
    use std::cell::RefCell;
    use std::marker::PhantomData;

    pub struct Adapter<C>(PhantomData<C>);

    thread_local! {
        // One instance per component instance: the host gives every session a fresh
        // component instance, so this holds at most one configured connector.
        static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    fn with_instance<C: Connector, T>(f: impl FnOnce(&mut C) -> Result<T, PluginError>) -> Result<T, PluginError> {
        INSTANCE.with_borrow_mut(|slot| match slot.as_mut().and_then(|b| b.downcast_mut::<C>()) {
            Some(instance) => f(instance),
            None => Err(PluginError::NotConfigured("`configure` has not succeeded on this instance".into())),
        })
    }

    impl<C: Connector> Guest for Adapter<C> {
        fn info() -> PluginInfo {
            C::info()
        }

        fn configure(settings: Vec<Setting>) -> Result<Vec<String>, Vec<FieldError>> {
            INSTANCE.set(None);
            let mut config = Config::new(&C::info().fields, settings);
            let instance = C::configure(&mut config)?;
            let origins = instance.origins_in_use();
            INSTANCE.set(Some(Box::new(instance)));
            Ok(origins)
        }

        fn verify() -> Result<Vec<Check>, PluginError> {
            with_instance::<C, _>(|c| c.verify())
        }

        fn start(request: RunRequest) -> Result<RunPlan, PluginError> {
            with_instance::<C, _>(|c| c.start(request))
        }

        fn fetch() -> Result<Option<Page>, PluginError> {
            with_instance::<C, _>(|c| c.fetch())
        }

        fn finish() -> Result<Option<Vec<u8>>, PluginError> {
            with_instance::<C, _>(|c| c.finish())
        }

        fn map(page: Page) -> Result<(), PluginError> {
            with_instance::<C, _>(|c| {
                let mut out = Output::to_host();
                let result = c.map(&page, &mut out);
                // Records already produced reach the host even if the page failed
                // later: the host discards the whole run on an error anyway.
                out.flush();
                result
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sdk_version_is_the_contract_version() {
        let world = include_str!("../world.wit");
        let package = world.lines().find(|l| l.starts_with("package ")).expect("a package line");
        assert_eq!(package, format!("package vulnbridge:connector@{};", super::CONTRACT_VERSION));
    }
}

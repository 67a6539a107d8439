//! Converting an older contract line's values into the current line's and back:
//! the machinery every `since_v*` adapter shares. Records and enums a version did
//! not change convert field by field or case by case ([`records!`], [`cases!`]);
//! what changed is written out in the line's own module.

/// A value of one contract's type as the same value of another's.
pub(crate) trait Adapt<T> {
    /// The converted value.
    fn adapt(self) -> T;
}

macro_rules! same {
    ($($t:ty),*) => { $(impl Adapt<$t> for $t { fn adapt(self) -> $t { self } })* };
}
same!(String, u8, u16, u32, u64, i64, bool);

impl<A: Adapt<B>, B> Adapt<Option<B>> for Option<A> {
    fn adapt(self) -> Option<B> {
        self.map(Adapt::adapt)
    }
}

impl<A: Adapt<B>, B> Adapt<Vec<B>> for Vec<A> {
    fn adapt(self) -> Vec<B> {
        self.into_iter().map(Adapt::adapt).collect()
    }
}

impl Adapt<(String, String)> for (String, String) {
    fn adapt(self) -> (String, String) {
        self
    }
}

/// A record built from another line's record with the same fields.
pub(crate) trait FromFields<T> {
    /// The record, field by field.
    fn from_fields(v: T) -> Self;
}

/// Records with the same fields in two lines, converted both ways.
macro_rules! records {
    ($($a:ty, $b:ty { $($field:ident),* };)*) => {$(
        impl $crate::bindings::adapt::Adapt<$b> for $a {
            fn adapt(self) -> $b { <$b as $crate::bindings::adapt::FromFields<$a>>::from_fields(self) }
        }
        impl $crate::bindings::adapt::Adapt<$a> for $b {
            fn adapt(self) -> $a { <$a as $crate::bindings::adapt::FromFields<$b>>::from_fields(self) }
        }
        impl $crate::bindings::adapt::FromFields<$a> for $b {
            fn from_fields(v: $a) -> $b { Self { $($field: $crate::bindings::adapt::Adapt::adapt(v.$field)),* } }
        }
        impl $crate::bindings::adapt::FromFields<$b> for $a {
            fn from_fields(v: $b) -> $a { Self { $($field: $crate::bindings::adapt::Adapt::adapt(v.$field)),* } }
        }
    )*};
}
pub(crate) use records;

/// Enums and variants with the same cases in two lines, converted both ways.
macro_rules! cases {
    ($($a:ident, $b:ident { $($case:ident $(($x:ident))?),* };)*) => {$(
        impl $crate::bindings::adapt::Adapt<$b> for $a {
            fn adapt(self) -> $b {
                match self { $($a::$case $(($x))? => $b::$case $(($crate::bindings::adapt::Adapt::adapt($x)))?),* }
            }
        }
        impl $crate::bindings::adapt::Adapt<$a> for $b {
            fn adapt(self) -> $a {
                match self { $($b::$case $(($x))? => $a::$case $(($crate::bindings::adapt::Adapt::adapt($x)))?),* }
            }
        }
    )*};
}
pub(crate) use cases;

/// An older line's call result as the current types.
pub(crate) trait AdaptResult<T> {
    /// The result, converted.
    fn adapt_result(self) -> T;
}

impl<A: Adapt<B>, B, E: Adapt<super::types::PluginError>> AdaptResult<Result<B, super::types::PluginError>>
    for Result<A, E>
{
    fn adapt_result(self) -> Result<B, super::types::PluginError> {
        self.map(Adapt::adapt).map_err(Adapt::adapt)
    }
}

/// The imports of an older line (`http`, `log`, `output`), forwarded to the current
/// line's capabilities: expanded inside the line's module, where `http`, `log`,
/// `output`, `types` name its generated interfaces, `current` the current line's,
/// and its `Adapt` impls convert the values.
macro_rules! forward_imports {
    () => {
        impl types::Host for $crate::plugin_state::PluginState {}

        impl http::Host for $crate::plugin_state::PluginState {
            fn send(&mut self, request: http::Request) -> wasmtime::Result<Result<http::Response, http::HttpError>> {
                let result = current::http::Host::send(self, request.adapt())?;
                Ok(result.map(Adapt::adapt).map_err(Adapt::adapt))
            }
        }

        impl log::Host for $crate::plugin_state::PluginState {
            fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
                current::log::Host::log(self, level.adapt(), message)
            }
        }

        impl output::Host for $crate::plugin_state::PluginState {
            fn emit_assets(&mut self, assets: Vec<types::Asset>) -> wasmtime::Result<()> {
                current::output::Host::emit_assets(self, assets.adapt())
            }
            fn emit_vulnerabilities(&mut self, vulnerabilities: Vec<types::Vulnerability>) -> wasmtime::Result<()> {
                current::output::Host::emit_vulnerabilities(self, vulnerabilities.adapt())
            }
            fn emit_definitions(&mut self, definitions: Vec<types::VulnerabilityDefinition>) -> wasmtime::Result<()> {
                current::output::Host::emit_definitions(self, definitions.adapt())
            }
            fn count(&mut self, counter: String, delta: u64) -> wasmtime::Result<()> {
                current::output::Host::count(self, counter, delta)
            }
            fn skip(&mut self, reason: String, count: u64) -> wasmtime::Result<()> {
                current::output::Host::skip(self, reason, count)
            }
            fn progress(&mut self, stage: String, done: u64, total: Option<u64>) -> wasmtime::Result<()> {
                current::output::Host::progress(self, stage, done, total)
            }
        }
    };
}
pub(crate) use forward_imports;

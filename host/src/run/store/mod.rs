//! What a run keeps between the plugin's records and the join, in memory that does
//! not grow with the tenant: strings as numbers ([`interner`]), vulnerabilities in an
//! on-disk sort ([`external_sort`]), and assets encoded ([`asset_codec`]) in a log
//! that moves to disk as it grows ([`byte_log`]).

pub(crate) mod asset_codec;
pub(crate) mod byte_log;
pub(crate) mod external_sort;
pub(crate) mod interner;

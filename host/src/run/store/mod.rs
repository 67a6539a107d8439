//! What a run keeps between the plugin's records and the join, in memory that does
//! not grow with the tenant: strings as numbers ([`interner`]), vulnerabilities in an
//! on-disk sort ([`external_sort`]), and assets encoded ([`asset_codec`]) in a log
//! that moves to disk as it grows ([`byte_log`]).

pub mod asset_codec;
pub mod byte_log;
pub mod external_sort;
pub mod interner;

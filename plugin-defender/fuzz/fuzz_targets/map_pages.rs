//! Any bytes, as a machines page, a vulnerabilities page and an export file: the
//! mapping may refuse them, never panic, and accounts for every row it reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plugin_defender::mapping;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = mapping::map_machines_page(data) {
        assert_eq!(m.rows, m.assets.len() as u64 + m.skipped.values().sum::<u64>());
    }
    if let Ok(m) = mapping::map_vulnerabilities_page(data) {
        assert_eq!(m.rows, m.vulnerabilities.len() as u64 + m.skipped.values().sum::<u64>());
    }
    let _ = mapping::map_export_file(data);
});

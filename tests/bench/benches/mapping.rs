//! The Defender mapping on a generated vulnerabilities page (natively; the wasm
//! figure is in `connector-bench`, which measures the component in the host).
//!
//! `cargo bench -p connector-bench --bench mapping`

use connector_simulators::defender::{Tenant, TenantSpec};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// A page as Defender sends it: `{"@odata.context": ..., "value": [rows]}`.
fn page(rows: u64) -> Vec<u8> {
    let tenant = Tenant::generate(TenantSpec { seed: 7, devices: 500, rows });
    let rows: Vec<_> = tenant.rows().collect();
    serde_json::to_vec(&serde_json::json!({"@odata.context": "https://api/$metadata", "value": rows})).unwrap()
}

fn mapping(c: &mut Criterion) {
    let rows = 10_000;
    let body = page(rows);
    let mut group = c.benchmark_group("defender mapping");
    group.throughput(Throughput::Elements(rows));
    group.bench_function("vulnerabilities page, 10,000 rows", |b| {
        b.iter(|| plugin_defender::mapping::map_vulnerabilities_page(std::hint::black_box(&body)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, mapping);
criterion_main!(benches);

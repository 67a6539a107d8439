//! The join and the KDI writer: records collected, joined (in memory, and through
//! the on-disk sort with a small buffer), and written as KDI files.
//!
//! `cargo bench -p connector-bench --bench kdi_writer`

use chrono::Utc;
use connector_host::bench_support::Collector;
use connector_host::bench_support::{write, WriteOptions};
use connector_host::run::DEFAULT_MAX_FILE_BYTES;
use connector_host::types::{Asset, Datetime, Locators, Vulnerability, VulnerabilityStatus};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const ASSETS: usize = 1_000;
const VULNS_EACH: usize = 50;

fn collector(buffer_bytes: usize) -> Collector {
    let mut c = Collector::with_buffer(buffer_bytes);
    for a in 0..ASSETS {
        let key = format!("{:040x}", a * 7919);
        let locators = Locators {
            external_id: Some(key.clone()),
            hostname: Some(format!("ws-{a:05}")),
            fqdn: Some(format!("ws-{a:05}.corp.example")),
            netbios: None,
            ip_address: Some(format!("10.0.{}.{}", a / 250, a % 250)),
            mac_address: None,
            url: None,
            application: None,
        };
        let tags = vec!["MSDefenderTvm".into(), "rbacGroup: servers".into()];
        c.add_assets(vec![Asset {
            key: key.clone(),
            locators,
            os: Some("Windows11".into()),
            os_version: None,
            tags,
            last_seen: None,
        }]);
        c.add_vulnerabilities(
            (0..VULNS_EACH)
                .map(|v| Vulnerability {
                    asset_key: key.clone(),
                    identifier: format!("CVE-2024-{:05}", (a * 31 + v * 17) % 4_000),
                    score: (v % 11) as u8,
                    found: Some(Datetime { seconds: 1_700_000_000, nanoseconds: 0 }),
                    last_seen: Some(Datetime { seconds: 1_700_500_000, nanoseconds: 0 }),
                    details: Some(format!("{{\"software\": \"chrome\", \"version\": \"1{v}.0\", \"path\": \"C:\\\\Program Files\\\\app{a}\"}}")),
                    status: VulnerabilityStatus::Open,
                })
                .collect(),
        );
    }
    c
}

fn writer(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let options = WriteOptions {
        scanner_type: "MS Defender TVM".into(),
        assets_per_file: 500,
        max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        run_started: Utc::now(),
        reset_tags: false,
        skip_autoclose: false,
    };
    let mut group = c.benchmark_group("join and KDI writer");
    group.sample_size(20);
    group.throughput(Throughput::Elements((ASSETS * VULNS_EACH) as u64));
    for (name, buffer) in [("in memory", 1 << 30), ("spilled to disk (1 MiB buffer)", 1 << 20)] {
        group.bench_function(format!("collect, join and write 50,000 vulnerabilities, {name}"), |b| {
            b.iter_batched(
                || (),
                |()| {
                    let joined = collector(buffer).finish().unwrap();
                    write(joined, dir.path(), options.clone()).unwrap()
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.bench_function("write only, 50,000 vulnerabilities", |b| {
        b.iter_batched(
            || collector(1 << 30).finish().unwrap(),
            |joined| write(joined, dir.path(), options.clone()).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, writer);
criterion_main!(benches);

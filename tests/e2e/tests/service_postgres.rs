//! The platform service on a real PostgreSQL server of the test's own: `serve
//! --workers 0` and separate `worker` processes share the runs through the database.
//! One worker is killed mid-run, one is stopped with SIGTERM, one is killed while
//! its run uploads; every run executes exactly once and nothing is uploaded twice.

use connector_cvm_simulator::{CvmOptions, CvmSim};
use connector_e2e::kdi;
use connector_e2e::service::{cvm_settings, defender_settings, Api, Postgres, Process, ADMIN_TOKEN};
use connector_simulators::defender::{DefenderSim, Faults, SimOptions, TenantSpec};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const CONNECTORS: usize = 5;
const LEASE: &str = "2";

fn worker(pg: &Postgres, dir: &Path, index: usize, key: &str) -> (Process, String) {
    let state = dir.join(format!("worker-{index}"));
    let args = ["--database", pg.url.as_str(), "--lease-seconds", LEASE];
    Process::worker(&state, &args, &[("CONNECTOR_HOST_SECRET_KEY", key)]).unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until some run is running on a worker of `names` (and has begun its upload,
/// with `uploading`); that run.
fn running_on(api: &Api, names: &[&str], uploading: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, runs) = api.get("/api/runs?limit=500");
        if let Some(run) = runs.as_array().unwrap().iter().find(|r| {
            r["status"] == "running"
                && names.contains(&r["worker"].as_str().unwrap_or_default())
                && (!uploading || r["delivery_started"] == true)
        }) {
            return run.clone();
        }
        assert!(Instant::now() < deadline, "no run started on {names:?}: {runs}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn queue_round(api: &Api, connectors: &[String]) -> Vec<String> {
    connectors
        .iter()
        .map(|id| {
            let (status, queued) = api.post(&format!("/api/connectors/{id}/runs"), json!({}));
            assert_eq!(status, 202, "{queued}");
            queued["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn workers_share_runs_through_postgres_exactly_once_and_survive_a_lost_worker() {
    let pg = Postgres::start("workers");
    let dir = kdi::temp_dir("service-postgres");
    // Slow answers make each run last a few seconds, so workers are caught mid-run.
    let faults = Faults { slow: Some(Duration::from_millis(150)), ..Faults::default() };
    let defender = DefenderSim::start(
        TenantSpec { seed: 9, devices: 40, rows: 800 },
        SimOptions { faults, ..SimOptions::default() },
    )
    .unwrap();
    let options = CvmOptions { run_duration: Duration::from_millis(1500), ..CvmOptions::default() };
    let cvms: Vec<CvmSim> = (0..CONNECTORS).map(|_| CvmSim::start(options.clone()).unwrap()).collect();

    let state = dir.join("serve");
    let serve_args = ["--workers", "0", "--database", pg.url.as_str(), "--lease-seconds", LEASE];
    let (serve, url) = Process::serve(&state, &serve_args, &[("CONNECTOR_HOST_ADMIN_TOKEN", ADMIN_TOKEN)])
        .unwrap_or_else(|e| panic!("{e}"));
    let api = Api::new(&url, Some(ADMIN_TOKEN));
    // Workers on other machines get the key from the environment.
    let key = std::fs::read_to_string(state.join("secret.key")).unwrap().trim().to_owned();
    let mut workers: Vec<(Process, String)> = (0..3).map(|i| worker(&pg, &dir, i, &key)).collect();

    let connectors: Vec<String> = cvms
        .iter()
        .enumerate()
        .map(|(i, cvm)| {
            let mut settings = defender_settings(&defender);
            settings["page_size"] = json!(100);
            let cvm = cvm_settings(cvm);
            let body =
                json!({"plugin": "defender-tvm", "name": format!("tenant {i}"), "settings": settings, "cvm": cvm});
            let (status, connector) = api.post("/api/connectors", body);
            assert_eq!(status, 201, "{connector}");
            connector["id"].as_str().unwrap().to_owned()
        })
        .collect();

    let mut runs = queue_round(&api, &connectors);
    // Kill one worker in the middle of a run (no goodbye, as when a machine is lost).
    let names: Vec<String> = workers.iter().map(|w| w.1.clone()).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let lost_run = running_on(&api, &name_refs, false);
    let lost = lost_run["worker"].as_str().unwrap().to_owned();
    let index = workers.iter().position(|w| w.1 == lost).unwrap();
    let (mut killed, _) = workers.remove(index);
    killed.signal(libc::SIGKILL);
    killed.wait(Duration::from_secs(10));

    // Stop another with SIGTERM while it runs: it finishes what it holds, then exits.
    let others: Vec<&str> = workers.iter().map(|w| w.1.as_str()).collect();
    let stopping_run = running_on(&api, &others, false);
    let stopping = stopping_run["worker"].as_str().unwrap().to_owned();
    let index = workers.iter().position(|w| w.1 == stopping).unwrap();
    let (mut stopped, _) = workers.remove(index);
    stopped.signal(libc::SIGTERM);
    let status = stopped.wait(Duration::from_secs(120));
    assert!(status.success(), "a worker stopped by SIGTERM exits cleanly: {status}\n{}", stopped.log_text());
    let finished = api.get(&format!("/api/runs/{}", stopping_run["id"].as_str().unwrap())).1;
    assert_eq!(finished["status"], "succeeded", "the stopping worker finished its run: {finished}");
    assert_eq!(finished["worker"], stopping.as_str());

    // A second round on the workers left, and one that joins.
    workers.push(worker(&pg, &dir, 3, &key));
    for run in &runs {
        api.wait_for_run(run, Duration::from_secs(180));
    }
    runs.extend(queue_round(&api, &connectors));
    // Lose another worker while its run uploads to CVM: that run is not repeated.
    let names: Vec<String> = workers.iter().map(|w| w.1.clone()).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let uploading_run = running_on(&api, &name_refs, true);
    let index = workers.iter().position(|w| w.1 == uploading_run["worker"].as_str().unwrap()).unwrap();
    let (mut killed, _) = workers.remove(index);
    killed.signal(libc::SIGKILL);
    killed.wait(Duration::from_secs(10));
    let ended: Vec<Value> = runs.iter().map(|run| api.wait_for_run(run, Duration::from_secs(180))).collect();

    // Every run ran once, but the lost workers' runs: taken over before the upload
    // began, or ended as failed after it began; never uploaded twice.
    let find = |id: &Value| ended.iter().find(|r| r["id"] == *id).unwrap();
    let failed_after_upload = |run: &Value| {
        run["status"] == "failed"
            && run["error"].as_str().unwrap_or_default().contains("stopped answering after its upload to CVM began")
    };
    let lost_run = find(&lost_run["id"]);
    let taken_over =
        lost_run["status"] == "succeeded" && lost_run["attempt"] == 2 && lost_run["worker"] != lost.as_str();
    assert!(taken_over || failed_after_upload(lost_run), "the first lost worker's run: {lost_run}");
    let uploading_run = find(&uploading_run["id"]);
    assert!(failed_after_upload(uploading_run), "the run lost while uploading: {uploading_run}");
    let lost_ids = [&lost_run["id"], &uploading_run["id"]];
    for run in ended.iter().filter(|r| !lost_ids.contains(&&r["id"])) {
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["attempt"], 1, "executed once: {run}");
    }
    // CVM ran each succeeded run once, and a lost run at most once: the worker marks
    // the delivery begun just before its first request to CVM, so a worker killed
    // before its upload ended (the test kills as soon as it sees the mark) started no
    // CVM run at all. (Counting it as an upload made this test fail now and then.)
    let mut succeeded: BTreeMap<String, usize> = BTreeMap::new();
    let mut delivery_started: BTreeMap<String, usize> = BTreeMap::new();
    for run in &ended {
        let connector = run["connector"].as_str().unwrap().to_owned();
        if run["status"] == "succeeded" {
            *succeeded.entry(connector.clone()).or_default() += 1;
        }
        if run["delivery_started"] == true {
            *delivery_started.entry(connector).or_default() += 1;
        }
    }
    for (id, cvm) in connectors.iter().zip(&cvms) {
        let uploads = cvm.runs().len();
        let (least, most) = (succeeded.get(id).copied().unwrap_or(0), delivery_started.get(id).copied().unwrap_or(0));
        assert!((least..=most).contains(&uploads), "CVM runs of connector {id}: {uploads}, not {least}..={most}");
        assert!((1..=2).contains(&uploads), "each connector uploaded once a run: {uploads}");
    }
    drop(serve);
}

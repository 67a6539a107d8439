#![warn(missing_docs)]
#![deny(dead_code)]
//! Delivery to Cisco Vulnerability Management (CVM): the `[cvm]` configuration, the
//! connector API client, and the state that guards against mass closing.
//!
//! A delivery happens only after a run fetched everything and wrote its files:
//! every file is uploaded (`POST /connectors/{id}/data_file`), then exactly one
//! `POST /connectors/{id}/run` names them all, the host polls until the connector is
//! no longer running, and reads the run's counts. Before any upload, the run is
//! compared with the last successful upload of the same connector instance; a run
//! that would send fewer than half the assets or open vulnerabilities is refused
//! unless the operator allows it (CVM would close the rest).

pub mod baseline;
pub mod client;
pub mod config;
pub mod deliver;

pub use baseline::{BaselineDir, BaselineStore, Delta, LastUpload, Snapshot};
pub use client::CvmClient;
pub use config::{CvmConfig, CvmField, FIELDS};
pub use deliver::{deliver, DeliveryOptions, DeliveryReport, UploadGate};

//! Records appended as bytes and read back by position: the store beneath the
//! run's assets.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};

/// Records appended as bytes and read back by position: in memory up to a budget,
/// then in an anonymous temporary file, so that what a run keeps per record is a
/// position, not the record.
#[derive(Debug)]
pub(crate) struct ByteLog {
    memory: Vec<u8>,
    budget: usize,
    file: Option<BufWriter<File>>,
    /// Bytes appended so far (the next record's position).
    len: u64,
}

/// Where [`ByteLog::append`] put a record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Span {
    at: u64,
    len: u32,
}

impl Default for ByteLog {
    fn default() -> Self {
        ByteLog::with_budget(DEFAULT_LOG_BYTES)
    }
}

/// What a [`ByteLog`] keeps in memory before it moves to disk.
pub(crate) const DEFAULT_LOG_BYTES: usize = 8 << 20;

impl ByteLog {
    pub(crate) fn with_budget(budget: usize) -> Self {
        ByteLog { memory: Vec::new(), budget, file: None, len: 0 }
    }

    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<Span> {
        let span = Span { at: self.len, len: u32::try_from(bytes.len()).context("a record over 4 GiB")? };
        match &mut self.file {
            Some(file) => file.write_all(bytes).context("cannot write to a temporary file")?,
            None if self.memory.len() + bytes.len() > self.budget => {
                let file = tempfile::tempfile().context("cannot create a temporary file to keep records on disk")?;
                let mut file = BufWriter::with_capacity(1 << 20, file);
                file.write_all(&self.memory).context("cannot write to a temporary file")?;
                file.write_all(bytes).context("cannot write to a temporary file")?;
                self.memory = Vec::new();
                self.file = Some(file);
            }
            None => self.memory.extend_from_slice(bytes),
        }
        self.len += bytes.len() as u64;
        Ok(span)
    }

    /// Whether the records went to disk.
    #[cfg(test)]
    pub(crate) fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    /// Done appending: the log, ready to read.
    pub(crate) fn into_reader(self) -> Result<LogReader> {
        Ok(match self.file {
            Some(file) => LogReader::File(
                file.into_inner().map_err(|e| e.into_error()).context("cannot write to a temporary file")?,
            ),
            None => LogReader::Memory(self.memory),
        })
    }
}

/// Reads the records of a [`ByteLog`].
pub(crate) enum LogReader {
    Memory(Vec<u8>),
    File(File),
}

impl LogReader {
    /// The record at `span`, into `buffer` (replacing its contents).
    pub(crate) fn read(&mut self, span: Span, buffer: &mut Vec<u8>) -> Result<()> {
        buffer.clear();
        match self {
            LogReader::Memory(bytes) => {
                buffer.extend_from_slice(&bytes[span.at as usize..span.at as usize + span.len as usize])
            }
            LogReader::File(file) => {
                buffer.resize(span.len as usize, 0);
                read_at(file, span.at, buffer).context("cannot read a temporary file")?;
            }
        }
        Ok(())
    }
}

/// Reads `buffer.len()` bytes at `at`. The join reads a tenant's assets in key order,
/// not the order they were written, so each is a read at its own place: on Unix one
/// `pread` instead of a seek and a read (two system calls an asset, at 200,000 assets
/// about 4% of the join thread's time in `lseek`).
#[cfg(unix)]
fn read_at(file: &mut File, at: u64, buffer: &mut [u8]) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, at)
}

#[cfg(not(unix))]
fn read_at(file: &mut File, at: u64, buffer: &mut [u8]) -> std::io::Result<()> {
    use std::io::{Read, Seek};
    file.seek(std::io::SeekFrom::Start(at))?;
    file.read_exact(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_log_gives_every_record_back_in_memory_and_after_moving_to_disk() {
        let records: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; usize::from(i) * 3]).collect();
        for budget in [1 << 20, 100] {
            let mut log = ByteLog::with_budget(budget);
            let spans: Vec<Span> = records.iter().map(|r| log.append(r).unwrap()).collect();
            assert_eq!(log.on_disk(), budget == 100, "only the small budget moves to disk");
            let mut reader = log.into_reader().unwrap();
            let mut buffer = Vec::new();
            // Read out of order, as the join does (by key, not by arrival).
            for i in (0..records.len()).rev() {
                reader.read(spans[i], &mut buffer).unwrap();
                assert_eq!(buffer, records[i], "record {i} with budget {budget}");
            }
        }
    }
}

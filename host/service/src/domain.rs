//! The service's states as types: what the database stores as text, read and
//! written in one place.

/// Where a run is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum RunStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker has it.
    Running,
    /// Ended well: files written (and delivered, with a CVM part).
    Succeeded,
    /// Ended with an error, which the run keeps (an outcome's default: nothing
    /// ends well unless it says so).
    #[default]
    Failed,
}

impl RunStatus {
    /// As the database and the API write it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }

    /// A stored status; `None` for text that is none.
    pub(crate) fn parse(text: &str) -> Option<RunStatus> {
        [RunStatus::Queued, RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// Whether the run has ended (it will not change again).
    pub(crate) fn has_ended(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::RunStatus;

    #[test]
    fn statuses_read_back_as_written() {
        for status in [RunStatus::Queued, RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed] {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(RunStatus::parse("done"), None);
        assert!(RunStatus::Failed.has_ended() && !RunStatus::Running.has_ended());
    }
}

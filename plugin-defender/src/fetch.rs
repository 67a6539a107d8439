//! Paging through a run: every page of active machines, then every vulnerability
//! row, as JSON pages or export files. `fetch` returns one raw page per call; the host
//! maps it. Paging cannot go wrong silently: a nextLink seen before, one to another
//! origin, a page count beyond a sane cap, or machine pages that stop advancing all
//! end the run with an error that names the endpoint and page.

use crate::client::{self, Call, Client};
use crate::lenient::strip_bom;
use crate::model::MachinesEnvelope;
use crate::pacing;
use crate::settings::ApiMode;
use connector_sdk::http::Method;
use connector_sdk::log::{log, Level};
use connector_sdk::output;
use connector_sdk::types::{Page, PluginError};
use serde::Deserialize;
use std::collections::HashSet;

pub const MACHINES: &str = "machines";
pub const VULNERABILITIES: &str = "vulnerabilities";
/// A whole export file (gzip), as downloaded. Kept for plugins' fixtures and tests;
/// runs send [`EXPORT_LINES`].
pub const EXPORT_FILE: &str = "export-file";
/// Up to `page_size` JSON lines of an export file, decompressed: an export file can
/// hold millions of rows, far more than one page should.
pub const EXPORT_LINES: &str = "export-lines";
/// Counter: times the export's file list was asked for.
pub const EXPORT_LISTS: &str = "export file lists requested";

const MACHINES_ENDPOINT: &str = "/api/machines";
const VULNERABILITIES_ENDPOINT: &str = "/api/machines/SoftwareVulnerabilitiesByMachine";
const EXPORT_ENDPOINT: &str = "/api/machines/SoftwareVulnerabilitiesExport";

/// A sanity cap on pages of one kind: 200,000 rows x 100,000 pages is far beyond any
/// tenant, so reaching it means the paging is broken, not that the tenant is large.
const MAX_PAGES: u32 = 100_000;

/// Where a run stands.
pub enum Stage {
    /// Listing active machines.
    Machines(MachinesPaging),
    /// Following `@odata.nextLink` through the vulnerability rows.
    Vulnerabilities {
        /// The next API page's URL, empty after the last. One buffer for the whole
        /// run, allocated before the first page: a link allocated anew would lie
        /// just past a page body in linear memory and keep the next, larger body
        /// from reusing the space (linear memory never shrinks).
        next: String,
        /// API pages fetched so far.
        sequence: u32,
        seen: SeenLinks,
        rows: u64,
        /// The API page being handed out in parts.
        parts: Option<PageParts>,
        /// Parts handed out so far.
        handed: u32,
    },
    /// Asking for the export's file list; `resume` is the file to read next, and
    /// `reading` the part of it already read (when its link expired mid-file).
    ExportList {
        resume: usize,
        generation: Option<String>,
        lists: u32,
        reading: Option<Box<ExportReader>>,
    },
    /// Downloading export files in ranges, and handing each out in pages of lines.
    ExportFiles {
        files: Vec<String>,
        /// The file being read (or, once all are, their count).
        next: usize,
        generation: String,
        lists: u32,
        empty_tries: u32,
        /// The file being read, if one is.
        reading: Option<Box<ExportReader>>,
        /// Pages of lines handed out so far.
        chunks: u32,
    },
    /// An incremental run: the delta export's changes since the last run.
    Changes(Box<crate::delta::Changes>),
    Done,
}

/// State of the machines listing.
pub struct MachinesPaging {
    /// After the machines: changes since this time (an incremental run), or every
    /// vulnerability row (`None`, a full run).
    changes_since: Option<chrono::DateTime<chrono::Utc>>,
    /// A nextLink to follow, when the API sent one.
    next: Option<String>,
    skip: u64,
    sequence: u32,
    seen_links: SeenLinks,
    /// A 64-bit hash of every machine id seen: enough to count devices and to see
    /// that paging advances, in 8 bytes a device instead of a string (a tenant has
    /// hundreds of thousands, and this instance keeps them for the whole run).
    ids: HashSet<u64>,
}

impl Stage {
    /// A run: the machines, then every vulnerability row, or, with `changes_since`,
    /// the changes since then.
    pub fn start(changes_since: Option<chrono::DateTime<chrono::Utc>>) -> Self {
        Stage::Machines(MachinesPaging {
            changes_since,
            next: None,
            skip: 0,
            sequence: 0,
            seen_links: SeenLinks::default(),
            ids: HashSet::new(),
        })
    }
}

/// About how large a page handed to the host grows. An API page of 50,000 rows is
/// 40-80 MB; handed over whole, it is copied out of this instance, held by the host
/// and copied into the mapping instance, several times over in memory at once.
/// Parts of a few MiB keep that small, and let mapping start sooner.
pub const PART_BYTES: usize = 4 << 20;

/// An API page of vulnerability rows, handed out as parts: each part is itself an
/// OData page (`{"value":[...]}`) of whole rows, copied from the response as is.
pub struct PageParts {
    body: Vec<u8>,
    /// Where each row of `value` lies in `body`.
    rows: Vec<std::ops::Range<usize>>,
    next_row: usize,
}

impl PageParts {
    /// Finds the rows of a page and its nextLink by scanning its structure
    /// ([`crate::rows`]); a page the scan cannot follow is parsed, to be cut the
    /// same way or fail with serde_json's error.
    pub fn split(body: Vec<u8>, endpoint: &str, sequence: u32) -> Result<(PageParts, Option<String>), PluginError> {
        if let Some(page) = crate::rows::scan(&body) {
            return Ok((PageParts { body, rows: page.rows, next_row: 0 }, page.next_link));
        }
        let page: crate::model::Page = parse(&body, endpoint, sequence)?;
        let base = body.as_ptr() as usize;
        let rows = page
            .value
            .iter()
            .map(|row| {
                let start = row.get().as_ptr() as usize - base;
                start..start + row.get().len()
            })
            .collect();
        let next_link = page.next_link;
        Ok((PageParts { body, rows, next_row: 0 }, next_link))
    }

    /// The next part: rows up to about [`PART_BYTES`] (at least one), or `None`
    /// once every row was handed out.
    pub fn next_part(&mut self) -> Option<Vec<u8>> {
        const OPEN: &[u8] = b"{\"value\":[";
        if self.next_row >= self.rows.len() {
            return None;
        }
        let mut part = Vec::with_capacity(PART_BYTES.min(self.body.len()) + OPEN.len() + 2);
        part.extend_from_slice(OPEN);
        for (i, row) in self.rows[self.next_row..].iter().enumerate() {
            if i > 0 {
                if part.len() + row.len() + 3 > PART_BYTES {
                    break;
                }
                part.push(b',');
            }
            part.extend_from_slice(&self.body[row.clone()]);
            self.next_row += 1;
        }
        part.extend_from_slice(b"]}");
        Some(part)
    }
}

/// Fetches the next page and advances the stage.
pub fn next_page(api: &mut Client, stage: &mut Stage) -> Result<Option<Page>, PluginError> {
    loop {
        match stage {
            Stage::Machines(paging) => {
                let (page, done) = machines_page(api, paging)?;
                if done {
                    *stage = match paging.changes_since {
                        Some(since) => Stage::Changes(Box::new(crate::delta::Changes::new(
                            &api.settings.api_base,
                            since,
                            api.settings.page_size,
                        ))),
                        None => vulnerabilities_stage(api, paging.ids.len() as u64),
                    };
                }
                match page {
                    Some(page) => return Ok(Some(page)),
                    None => continue,
                }
            }
            Stage::Vulnerabilities { next, sequence, seen, rows, parts, handed } => {
                if let Some(body) = parts.as_mut().and_then(PageParts::next_part) {
                    let page = Page { kind: VULNERABILITIES.into(), sequence: *handed, body };
                    *handed += 1;
                    return Ok(Some(page));
                }
                // The last page's body goes before the next one arrives: linear
                // memory never shrinks, so two bodies at once would stay reserved.
                *parts = None;
                if next.is_empty() {
                    *stage = Stage::Done;
                    continue;
                }
                let body =
                    api.get(next, pacing::VULNERABILITIES, "Vulnerability.Read.All", api.settings.page_timeout)?;
                next.clear();
                let (split, next_link) = PageParts::split(body, VULNERABILITIES_ENDPOINT, *sequence)?;
                *rows += split.rows.len() as u64;
                output::progress("vulnerability rows", *rows, None);
                if let Some(link) = next_link {
                    check_next_link(&api.settings.api_bases, &link, seen, VULNERABILITIES_ENDPOINT, *sequence)?;
                    seen.insert(&link);
                    next.push_str(&link);
                    *sequence += 1;
                }
                *parts = Some(split);
            }
            Stage::ExportList { resume, generation, lists, reading } => {
                *stage = export_list(api, *resume, generation.take(), *lists, reading.take())?;
            }
            Stage::ExportFiles { files, next, generation, lists, empty_tries, reading, chunks } => {
                let reader = reading.get_or_insert_with(|| Box::new(ExportReader::new(*next, files.len())));
                match reader.next_lines(api.settings.page_size, PART_BYTES)? {
                    Lines::Page(body) => {
                        let page = Page { kind: EXPORT_LINES.into(), sequence: *chunks, body };
                        *chunks += 1;
                        return Ok(Some(page));
                    }
                    Lines::End => {
                        *reading = None;
                        *next += 1;
                        output::progress("export files", *next as u64, Some(files.len() as u64));
                        if *next == files.len() {
                            *stage = Stage::Done;
                        }
                    }
                    Lines::NeedMore => {
                        if !download_range(api, &files[*next], reader, files.len(), empty_tries)? {
                            // The link expired (or the body was not the file): ask for a
                            // new list and read on from where this file stands.
                            let generation = Some(generation.clone());
                            *stage =
                                Stage::ExportList { resume: *next, generation, lists: *lists, reading: reading.take() };
                        }
                    }
                }
            }
            Stage::Changes(changes) => match changes.next_page(api)? {
                Some(page) => return Ok(Some(page)),
                None => *stage = Stage::Done,
            },
            Stage::Done => return Ok(None),
        }
    }
}

/// A stable 64-bit hash of a machine id or link. Two of 200,000 ids collide with a
/// chance of about one in a billion, and a collision would only undercount one
/// device (or, for links, end a run with an error rather than loop).
pub(crate) fn hash64(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // DefaultHasher::new() has fixed keys: the same text always gives the same hash.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// The nextLinks a paging has followed, as hashes: nothing is allocated per page
/// (see `Stage::Vulnerabilities::next` on why that matters), until the table
/// outgrows its first capacity, at a thousand pages.
pub struct SeenLinks(HashSet<u64>);

impl Default for SeenLinks {
    fn default() -> Self {
        SeenLinks(HashSet::with_capacity(1024))
    }
}

impl SeenLinks {
    pub(crate) fn contains(&self, link: &str) -> bool {
        self.0.contains(&hash64(link))
    }

    pub(crate) fn insert(&mut self, link: &str) {
        self.0.insert(hash64(link));
    }
}

/// The next page of machines, and whether it was the last. `None`: the list ended
/// without another page (a 404 after the first page).
fn machines_page(api: &mut Client, paging: &mut MachinesPaging) -> Result<(Option<Page>, bool), PluginError> {
    let top = api.settings.machines_page_size;
    let url = paging.next.take().unwrap_or_else(|| machines_url(&api.settings.api_base, top, paging.skip));
    let sequence = paging.sequence;
    let body = match api.get_found(&url, pacing::MACHINES, "Machine.Read.All", api.settings.request_timeout)? {
        client::Found::Body(body) => body,
        // Defender answers 404 for "no machines". On the first page that means the
        // tenant is not onboarded; after it, a page past the end of the list (the
        // device count was a multiple of the page size): the list is complete.
        client::Found::NotFound(_) if sequence > 0 => {
            log(
                Level::Info,
                &format!("{MACHINES_ENDPOINT} page {} answered 404: the list ended on the page before", sequence + 1),
            );
            return Ok((None, true));
        }
        client::Found::NotFound(message) => {
            return Err(PluginError::BadResponse(format!(
                "{MACHINES_ENDPOINT} answered 404: the tenant does not seem to be onboarded to Defender for Endpoint ({message})"
            )))
        }
    };
    let envelope: MachinesEnvelope = parse(&body, MACHINES_ENDPOINT, sequence)?;
    let count = envelope.value.len() as u64;
    let mut new = 0;
    for id in envelope.value.iter().filter_map(|m| m.id.as_deref()) {
        if paging.ids.insert(hash64(id.trim())) {
            new += 1;
        }
    }
    let next_link = envelope.next_link;
    output::progress("devices", paging.ids.len() as u64, None);
    // The API may send a nextLink (follow it, on the same origin, never twice); if it
    // does not but the page is full, offset paging goes on; a short page ends.
    let more = next_link.is_some() || count >= u64::from(top);
    if more && count > 0 && new == 0 {
        return Err(PluginError::BadResponse(format!(
            "{MACHINES_ENDPOINT} page {} holds only machines already seen; paging does not advance",
            sequence + 1
        )));
    }
    if more && sequence + 1 >= MAX_PAGES {
        return Err(PluginError::BadResponse(format!("{MACHINES_ENDPOINT} returned more than {MAX_PAGES} pages")));
    }
    if let Some(link) = next_link {
        check_next_link(&api.settings.api_bases, &link, &paging.seen_links, MACHINES_ENDPOINT, sequence)?;
        paging.seen_links.insert(&link);
        paging.next = Some(link);
    }
    paging.skip += count;
    paging.sequence += 1;
    Ok((Some(Page { kind: MACHINES.into(), sequence, body }), !more))
}

/// JSON pages or export files, as configured; `auto` follows Microsoft's advice to use
/// files above 100,000 devices (configurable).
fn vulnerabilities_stage(api: &Client, devices: u64) -> Stage {
    let export = match api.settings.api_mode {
        ApiMode::Json => false,
        ApiMode::Export => true,
        ApiMode::Auto => devices > api.settings.export_above_devices,
    };
    if export {
        log(Level::Info, &format!("{devices} devices: fetching vulnerabilities through the file export"));
        Stage::ExportList { resume: 0, generation: None, lists: 0, reading: None }
    } else {
        Stage::Vulnerabilities {
            next: {
                let mut next = String::with_capacity(4096);
                next.push_str(&vulnerabilities_url(&api.settings.api_base, api.settings.page_size));
                next
            },
            sequence: 0,
            seen: SeenLinks::default(),
            rows: 0,
            parts: None,
            handed: 0,
        }
    }
}

#[derive(Deserialize)]
struct ExportFilesResponse {
    #[serde(rename = "exportFiles", default)]
    export_files: Option<Vec<String>>,
    #[serde(rename = "generatedTime", default)]
    generated_time: Option<String>,
}

fn export_list(
    api: &mut Client,
    resume: usize,
    previous: Option<String>,
    lists: u32,
    reading: Option<Box<ExportReader>>,
) -> Result<Stage, PluginError> {
    if lists > api.settings.max_retries {
        return Err(PluginError::BadResponse(format!(
            "export files kept expiring or failing: asked for a new file list {lists} times"
        )));
    }
    let url = format!("{}{EXPORT_ENDPOINT}?sasValidHours=6", api.settings.api_base);
    let body = api.get(&url, pacing::EXPORT, "Vulnerability.Read.All", api.settings.request_timeout)?;
    let list: ExportFilesResponse = serde_json::from_slice(strip_bom(&body))
        .map_err(|e| PluginError::BadResponse(format!("{EXPORT_ENDPOINT} sent an unreadable file list: {e}")))?;
    let files = list.export_files.ok_or_else(|| {
        PluginError::BadResponse(format!(
            "{EXPORT_ENDPOINT} answered without `exportFiles`: {}",
            crate::net::excerpt(&body)
        ))
    })?;
    let generation = list.generated_time.unwrap_or_default();
    if let Some(previous) = previous {
        if previous != generation && (resume > 0 || reading.is_some()) {
            return Err(PluginError::BadResponse(format!(
                "the export was regenerated during the run ({previous} became {generation}); files of two generations cannot be mixed, run again"
            )));
        }
    }
    output::count(EXPORT_LISTS, 1);
    if resume >= files.len() {
        return Ok(Stage::Done);
    }
    Ok(Stage::ExportFiles { files, next: resume, generation, lists: lists + 1, empty_tries: 0, reading, chunks: 0 })
}

/// Bytes of an export file asked for at a time (`Range`): an export file can be
/// hundreds of MB gzipped, and downloaded whole it sat in memory twice (the host's
/// copy and this instance's) while its lines were handed out.
pub const RANGE_BYTES: u64 = 4 << 20;
/// Compressed bytes decompressed at a time, so that little more than a page of lines
/// is ever held decompressed.
const FEED_BYTES: usize = 256 << 10;

/// What an export file has next.
pub enum Lines {
    /// Whole lines (blank ones ride along).
    Page(Vec<u8>),
    /// The downloaded part is used up: download the next range.
    NeedMore,
    /// Every line was handed out.
    End,
}

/// An export file read in ranges and handed out in pages of lines, decompressed as
/// it goes: neither the compressed nor the decompressed file is ever held whole.
pub struct ExportReader {
    index: usize,
    files: usize,
    /// Bytes of the file downloaded so far: where the next range starts.
    offset: u64,
    /// Downloaded, not yet decompressed (from `fed` on).
    compressed: Vec<u8>,
    fed: usize,
    /// Decompresses into its buffer; the lines before `taken` were handed out.
    decoder: flate2::write::MultiGzDecoder<Vec<u8>>,
    taken: usize,
    /// Where the scan for line ends stands, and what it counted since `taken`.
    scanned: usize,
    lines: u32,
    /// The whole file is downloaded, and then decompressed to its end.
    downloaded: bool,
    finished: bool,
}

impl ExportReader {
    pub fn new(index: usize, files: usize) -> Self {
        ExportReader {
            index,
            files,
            offset: 0,
            compressed: Vec::new(),
            fed: 0,
            decoder: flate2::write::MultiGzDecoder::new(Vec::new()),
            taken: 0,
            scanned: 0,
            lines: 0,
            downloaded: false,
            finished: false,
        }
    }

    /// Where the next range starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Adds the next downloaded bytes of the file; `last` when it ends with them.
    pub fn add(&mut self, bytes: &[u8], last: bool) {
        self.compressed.drain(..self.fed);
        self.fed = 0;
        self.compressed.extend_from_slice(bytes);
        self.offset += bytes.len() as u64;
        self.downloaded |= last;
    }

    fn unreadable(&self, e: std::io::Error) -> PluginError {
        PluginError::BadResponse(format!(
            "export file {} of {} is not a readable gzip file: {e}",
            self.index + 1,
            self.files
        ))
    }

    /// The next `rows` non-blank lines, or fewer once they fill `bytes` (whole
    /// lines only); `NeedMore` when the downloaded part holds no such page yet.
    pub fn next_lines(&mut self, rows: u32, bytes: usize) -> Result<Lines, PluginError> {
        use std::io::Write;
        loop {
            // Scan on for line ends, cutting a page at the limit.
            let out = self.decoder.get_ref();
            let mut line_start = self.scanned;
            while let Some(end) = out[self.scanned..].iter().position(|b| *b == b'\n').map(|p| self.scanned + p + 1) {
                if !out[line_start..end].iter().all(u8::is_ascii_whitespace) {
                    self.lines += 1;
                }
                self.scanned = end;
                line_start = end;
                if self.lines >= rows || end - self.taken >= bytes {
                    return Ok(Lines::Page(self.take(end)));
                }
            }
            if self.fed < self.compressed.len() {
                let feed = (self.compressed.len() - self.fed).min(FEED_BYTES);
                let slice = &self.compressed[self.fed..self.fed + feed];
                // Flushed, so that what was decompressed is in the buffer to scan.
                let result = self.decoder.write_all(slice).and_then(|()| self.decoder.flush());
                result.map_err(|e| self.unreadable(e))?;
                self.fed += feed;
                continue;
            }
            if !self.downloaded {
                return Ok(Lines::NeedMore);
            }
            if !self.finished {
                self.decoder.try_finish().map_err(|e| self.unreadable(e))?;
                self.finished = true;
                continue;
            }
            // The rest: a last line without a line end, or nothing.
            let end = self.decoder.get_ref().len();
            self.scanned = end;
            return Ok(match end > self.taken {
                true => Lines::Page(self.take(end)),
                false => Lines::End,
            });
        }
    }

    /// Hands out the decompressed bytes up to `end`, and lets go of them.
    fn take(&mut self, end: usize) -> Vec<u8> {
        let page = self.decoder.get_ref()[self.taken..end].to_vec();
        self.taken = end;
        self.lines = 0;
        if self.taken > PART_BYTES {
            let buffer = self.decoder.get_mut();
            buffer.drain(..self.taken);
            self.scanned -= self.taken;
            self.taken = 0;
        }
        page
    }
}

/// Downloads the next range of an export file into `reader`. No token goes to the
/// storage host: the URL carries its own signature. Returns false when the link has
/// expired (a 403, or a 200 that is not the file).
fn download_range(
    api: &mut Client,
    url: &str,
    reader: &mut ExportReader,
    files: usize,
    empty_tries: &mut u32,
) -> Result<bool, PluginError> {
    let (index, offset) = (reader.index, reader.offset());
    let range = format!("bytes={offset}-{}", offset + RANGE_BYTES - 1);
    let response = api.send(Call {
        method: Method::Get,
        url,
        headers: vec![("range".into(), range)],
        body: None,
        pace: None,
        timeout: api.settings.page_timeout,
    })?;
    let gzip = |body: &[u8]| body.starts_with(&[0x1f, 0x8b]);
    match response.status {
        206 => {
            // `Content-Range: bytes a-b/size`; without a size, a short range is the last.
            let size = response
                .header("content-range")
                .and_then(|r| r.rsplit_once('/'))
                .and_then(|(_, s)| s.trim().parse::<u64>().ok());
            let end = offset + response.body.len() as u64;
            let last =
                response.body.is_empty() || size.map_or((response.body.len() as u64) < RANGE_BYTES, |size| end >= size);
            if offset == 0 && !gzip(&response.body) {
                return Ok(expired(index, files));
            }
            *empty_tries = 0;
            reader.add(&response.body, last);
            Ok(true)
        }
        // A range past the end: the file ended exactly at the last one.
        416 => {
            reader.add(&[], true);
            Ok(true)
        }
        200 if response.body.is_empty() => {
            // Elastic saw this before a file was ready: wait and retry, bounded.
            *empty_tries += 1;
            if *empty_tries > api.settings.max_retries {
                return Err(PluginError::BadResponse(format!(
                    "export file {} of {} came back empty {} times",
                    index + 1,
                    files,
                    *empty_tries
                )));
            }
            output::count(client::RETRIES, 1);
            std::thread::sleep(api.settings.retry_delay.saturating_mul(*empty_tries));
            Ok(true)
        }
        // A server that ignores `Range` sends the whole file: keep what is new.
        200 if gzip(&response.body) => {
            *empty_tries = 0;
            let new = response.body.get(offset as usize..).unwrap_or_default();
            reader.add(new, true);
            Ok(true)
        }
        // An expired signature is a 403 with XML; a 200 that is not gzip meant the same.
        200 | 403 => Ok(expired(index, files)),
        status => Err(PluginError::BadResponse(format!(
            "export file {} of {} answered HTTP {status}: {}",
            index + 1,
            files,
            crate::net::excerpt(&response.body)
        ))),
    }
}

fn expired(index: usize, files: usize) -> bool {
    log(Level::Info, &format!("export file {} of {files}: the link has expired; asking for a new list", index + 1));
    false
}

pub(crate) fn parse<'a, T: Deserialize<'a>>(body: &'a [u8], endpoint: &str, sequence: u32) -> Result<T, PluginError> {
    serde_json::from_slice(strip_bom(body)).map_err(|e| {
        PluginError::BadResponse(format!("{endpoint} page {} is not a readable OData page: {e}", sequence + 1))
    })
}

/// A nextLink must stay on the configured API origin or another documented API host
/// of the same cloud (Microsoft's own examples show nextLinks on another host than
/// the request's); the bearer token goes with it, so anything else is refused. It
/// must not repeat either (a loop would never end).
pub(crate) fn check_next_link(
    api_bases: &[String],
    link: &str,
    seen: &SeenLinks,
    endpoint: &str,
    sequence: u32,
) -> Result<(), PluginError> {
    let on = |base: &String| {
        link.get(..base.len()).is_some_and(|prefix| prefix.eq_ignore_ascii_case(base))
            && link[base.len()..].starts_with('/')
    };
    if !api_bases.iter().any(on) {
        return Err(PluginError::BadResponse(format!(
            "{endpoint} page {} has a nextLink to another origin ({}); refusing to send the token there: it is not a Defender API host of this cloud",
            sequence + 1,
            crate::net::host_of(link)
        )));
    }
    if seen.contains(link) || sequence + 1 >= MAX_PAGES {
        return Err(PluginError::BadResponse(format!(
            "{endpoint} page {} links back to a page already fetched; paging would never end",
            sequence + 1
        )));
    }
    Ok(())
}

pub fn machines_url(api_base: &str, top: u32, skip: u64) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("$filter", "healthStatus eq 'Active'")
        .append_pair("$top", &top.to_string())
        .append_pair("$skip", &skip.to_string())
        .finish();
    format!("{api_base}{MACHINES_ENDPOINT}?{query}")
}

pub fn vulnerabilities_url(api_base: &str, page_size: u32) -> String {
    format!("{api_base}{VULNERABILITIES_ENDPOINT}?pageSize={page_size}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_query_filters_active_and_pages_by_offset() {
        assert_eq!(
            machines_url("https://h", 10000, 20000),
            "https://h/api/machines?%24filter=healthStatus+eq+%27Active%27&%24top=10000&%24skip=20000"
        );
    }

    #[test]
    fn vulnerabilities_query_uses_page_size_never_top() {
        let url = vulnerabilities_url("https://h", 50000);
        assert!(url.ends_with("?pageSize=50000"));
        assert!(!url.contains("$top"));
    }

    #[test]
    fn next_links_to_other_origins_or_seen_before_are_refused() {
        let mut seen = SeenLinks::default();
        let bases = ["https://api.x.com".to_owned()];
        let check = |link: &str, seen: &SeenLinks| check_next_link(&bases, link, seen, "/e", 0);
        assert!(check("https://api.x.com/api/m?$skiptoken=a", &seen).is_ok());
        assert!(check("https://api.x.com.evil.net/api/m", &seen).is_err());
        assert!(check("https://api.x.com:8443/api/m", &seen).is_err());
        assert!(check("https://other.net/api/m", &seen).is_err());
        assert!(check("http://api.x.com/api/m", &seen).is_err());
        seen.insert("https://api.x.com/api/m?$skiptoken=a");
        assert!(check("https://api.x.com/api/m?$skiptoken=a", &seen).is_err());
    }

    #[test]
    fn next_links_may_move_between_documented_hosts_of_one_cloud_only() {
        let settings = |host: &str| crate::settings::for_tests(&[("host", host)]);
        let seen = SeenLinks::default();
        let commercial = settings("api.securitycenter.microsoft.com").api_bases;
        let check = |bases: &[String], link: &str| check_next_link(bases, link, &seen, "/e", 0).is_ok();
        assert!(check(
            &commercial,
            "https://api.security.microsoft.com/api/machines/SoftwareVulnerabilitiesByMachine?$skiptoken=x"
        ));
        assert!(check(&commercial, "https://eu.api.security.microsoft.com/api/x"));
        assert!(!check(&commercial, "https://api-gov.securitycenter.microsoft.us/api/x"), "another cloud");
        assert!(!check(&commercial, "https://wpatdadi-eus-stg.cloudapp.net/api/x"), "not a documented host");
        let gov = settings("api-gov.securitycenter.microsoft.us").api_bases;
        assert!(check(&gov, "https://api-gov.securitycenter.microsoft.us/api/x"));
        assert!(!check(&gov, "https://api.security.microsoft.com/api/x"), "commercial from a government tenant");
    }

    #[test]
    fn an_api_page_is_handed_out_in_parts_of_whole_rows() {
        let rows: Vec<String> = (0..300)
            .map(|i| {
                format!(
                    r#"{{"deviceId":"device-{i}","cveId":"CVE-2024-{:04}","softwareName":"{}"}}"#,
                    i + 1000,
                    "x".repeat(i % 50)
                )
            })
            .collect();
        let body = format!(
            "\u{feff}{{\"@odata.context\":\"c\",\"value\":[{}, 7 ],\"@odata.nextLink\":\"https://api/next\"}}",
            rows.join(" ,\n")
        );
        let (mut parts, next_link) = super::PageParts::split(body.into_bytes(), "/api/x", 0).unwrap();
        assert_eq!(next_link.as_deref(), Some("https://api/next"));
        let mut mapped = Vec::new();
        let mut skipped = 0;
        let mut count = 0;
        while let Some(part) = parts.next_part() {
            count += 1;
            assert!(part.len() <= super::PART_BYTES);
            let m = crate::mapping::map_vulnerabilities_page(&part).unwrap();
            mapped.extend(m.vulnerabilities.into_iter().map(|v| v.asset_key));
            skipped += m.skipped.values().sum::<u64>();
        }
        assert_eq!(count, 1, "300 small rows make one part");
        let expected: Vec<String> = (0..300).map(|i| format!("device-{i}")).collect();
        assert_eq!(mapped, expected, "every row once, in order");
        assert_eq!(skipped, 1, "a row that is not an object is still handed over, to be counted");

        let big = format!(r#"{{"deviceId":"d","details":"{}"}}"#, "y".repeat(super::PART_BYTES / 3));
        let body = format!(r#"{{"value":[{big},{big},{big},{big}]}}"#);
        let (mut parts, next_link) = super::PageParts::split(body.into_bytes(), "/api/x", 0).unwrap();
        assert_eq!(next_link, None);
        let sizes: Vec<u64> = std::iter::from_fn(|| parts.next_part())
            .map(|part| crate::mapping::map_vulnerabilities_page(&part).unwrap().rows)
            .collect();
        assert_eq!(sizes, [2, 2], "parts stop before PART_BYTES");

        let error = super::PageParts::split(b"{\"value\": [1,".to_vec(), "/api/x", 4).err().unwrap();
        assert!(format!("{error:?}").contains("/api/x page 5 is not a readable OData page"), "{error:?}");
        let huge = format!(r#"{{"value":[{{"deviceId":"{}"}}]}}"#, "z".repeat(super::PART_BYTES * 2));
        let (mut parts, _) = super::PageParts::split(huge.into_bytes(), "/api/x", 0).unwrap();
        assert!(parts.next_part().unwrap().len() > super::PART_BYTES, "a row larger than a part is its own part");
        assert!(parts.next_part().is_none());
    }

    /// Reads an export file given in downloads of `chunk` bytes, as the ranges come.
    fn read_in_ranges(gzip: &[u8], chunk: usize, rows: u32, bytes: usize) -> Vec<String> {
        let mut reader = super::ExportReader::new(0, 1);
        let mut pages = Vec::new();
        let mut downloaded = 0;
        loop {
            match reader.next_lines(rows, bytes).unwrap() {
                super::Lines::Page(page) => pages.push(String::from_utf8(page).unwrap()),
                super::Lines::NeedMore => {
                    let next = (downloaded + chunk).min(gzip.len());
                    reader.add(&gzip[downloaded..next], next == gzip.len());
                    downloaded = next;
                }
                super::Lines::End => return pages,
            }
        }
    }

    #[test]
    fn export_files_are_handed_out_in_pages_of_lines_whatever_the_ranges() {
        use std::io::Write;
        let text = "{\"DeviceId\":\"a\"}\n\n{\"DeviceId\":\"b\"}\r\n{\"DeviceId\":\"c\"}\n{\"DeviceId\":\"d\"}\n{\"DeviceId\":\"e\"}";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        for chunk in [1, 7, 64, gz.len()] {
            let pages = read_in_ranges(&gz, chunk, 2, super::PART_BYTES);
            assert_eq!(pages.len(), 3, "ranges of {chunk}: {pages:?}");
            assert_eq!(pages.concat(), text, "every byte handed out once, in order");
            let rows: Vec<u64> =
                pages.iter().map(|p| crate::mapping::map_export_lines(p.as_bytes()).unwrap().rows).collect();
            assert_eq!(rows, [2, 2, 1]);
        }

        // A page also ends once it holds `bytes`, after a whole line.
        let first = read_in_ranges(&gz, 5, 100, 20).remove(0);
        assert_eq!(first, "{\"DeviceId\":\"a\"}\n\n{\"DeviceId\":\"b\"}\r\n");

        // A large file: the decompressed part held stays near a page, not the file.
        let big: String = (0..200_000).map(|i| format!("{{\"DeviceId\":\"{i:08}\"}}\n")).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(big.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let pages = read_in_ranges(&gz, 64 << 10, 1_000, super::PART_BYTES);
        assert_eq!(pages.len(), 200);
        assert_eq!(pages.concat(), big);

        let mut broken = super::ExportReader::new(2, 3);
        broken.add(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3], true);
        let error = format!("{:?}", broken.next_lines(2, super::PART_BYTES).err().unwrap());
        assert!(error.contains("export file 3 of 3 is not a readable gzip file"), "{error}");
    }
}

//! A stand-in for a Hugging Face-style hub on 127.0.0.1, for the download tests: `GET
//! /{repo}/resolve/{revision}/{file}` redirects to `/blobs/{sha256}`, which serves the bytes with
//! `Range`, `ETag`, `Accept-Ranges` and `Content-Length` — unless a queued fault says otherwise.
//! One request per connection; the server stops when the `Hub` is dropped.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// What the next download round gets instead of a plain answer. Status faults answer the
/// resolve request; the others shape the blob request that follows its redirect.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with `Retry-After: seconds`.
    TooMany { retry_after: u64 },
    /// This status with an empty body (401, 403, 404, 500, ...).
    Status(u16),
    /// Headers for the whole remainder, then only this many bytes of it, then the connection
    /// is closed.
    DropAfter(usize),
    /// These bytes instead of the file.
    Content(Vec<u8>),
    /// The body in pieces of `chunk` bytes, `pause` apart.
    Slow { chunk: usize, pause: Duration },
    /// `after` bytes, then silence for `pause`, then the connection is closed.
    Stall { after: usize, pause: Duration },
}

/// A request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The request path.
    pub path: String,
    /// The `Range` header.
    pub range: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    /// Resolve paths to blob names.
    resolve: HashMap<String, String>,
    /// Blob names to bytes.
    blobs: HashMap<String, Vec<u8>>,
    faults: VecDeque<Fault>,
    blob_fault: Option<Fault>,
    seen: Vec<Seen>,
}

/// The running server.
pub struct Hub {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Hub {
    /// Starts a server on a free loopback port.
    pub fn start() -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let port = listener.local_addr().unwrap().port();
        let state: Arc<Mutex<State>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let state = Arc::clone(&state);
                        thread::spawn(move || answer(stream, port, &state));
                    }
                }
            })
        };
        Hub {
            port,
            state,
            stop,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Serves `bytes` as `file` of `repo` at `revision`.
    pub fn serve(&self, repo: &str, revision: &str, file: &str, bytes: Vec<u8>) {
        let blob = hex(&Sha256::digest(&bytes));
        let mut state = self.state.lock().unwrap();
        state
            .resolve
            .insert(format!("/{repo}/resolve/{revision}/{file}"), blob.clone());
        state.blobs.insert(blob, bytes);
    }

    /// Queues a fault for the next download round.
    pub fn fault(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn answer(stream: TcpStream, port: u16, state: &Mutex<State>) {
    let Some(seen) = read_request(&stream) else {
        return;
    };
    state.lock().unwrap().seen.push(seen.clone());
    let mut out = stream;
    if let Some(blob) = seen.path.strip_prefix("/blobs/") {
        let (bytes, fault) = {
            let mut state = state.lock().unwrap();
            (state.blobs.get(blob).cloned(), state.blob_fault.take())
        };
        match bytes {
            Some(bytes) => send_blob(&mut out, blob, bytes, seen.range.as_deref(), fault),
            None => status(&mut out, 404, &[]),
        }
        return;
    }
    let (blob, fault) = {
        let mut state = state.lock().unwrap();
        let blob = state.resolve.get(&seen.path).cloned();
        (blob, state.faults.pop_front())
    };
    match (blob, fault) {
        (_, Some(Fault::TooMany { retry_after })) => {
            status(&mut out, 429, &[("Retry-After", retry_after.to_string())])
        }
        (_, Some(Fault::Status(code))) => status(&mut out, code, &[]),
        (None, _) => status(&mut out, 404, &[]),
        (Some(blob), fault) => {
            state.lock().unwrap().blob_fault = fault;
            let location = format!("http://127.0.0.1:{port}/blobs/{blob}");
            status(&mut out, 302, &[("Location", location)]);
        }
    }
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let (mut range, mut authorization) = (None, None);
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "range" => range = Some(value.trim().to_string()),
            "authorization" => authorization = Some(value.trim().to_string()),
            _ => {}
        }
    }
    Some(Seen {
        path,
        range,
        authorization,
    })
}

fn status(out: &mut TcpStream, code: u16, headers: &[(&str, String)]) {
    let mut head = format!("HTTP/1.1 {code} Fault\r\nContent-Length: 0\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
}

fn send_blob(
    out: &mut TcpStream,
    blob: &str,
    bytes: Vec<u8>,
    range: Option<&str>,
    fault: Option<Fault>,
) {
    let bytes = match &fault {
        Some(Fault::Content(other)) => other.clone(),
        _ => bytes,
    };
    let total = bytes.len();
    let start = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok());
    let mut head = match start {
        Some(start) if start >= total => {
            status(out, 416, &[("Content-Range", format!("bytes */{total}"))]);
            return;
        }
        Some(start) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{total}\r\n",
            total - 1
        ),
        None => "HTTP/1.1 200 OK\r\n".to_string(),
    };
    let body = &bytes[start.unwrap_or(0)..];
    head.push_str(&format!(
        "Content-Length: {}\r\nETag: \"{blob}\"\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    let _ = match fault {
        Some(Fault::DropAfter(n)) => out.write_all(&body[..n.min(body.len())]),
        Some(Fault::Slow { chunk, pause }) => body.chunks(chunk.max(1)).try_for_each(|piece| {
            thread::sleep(pause);
            out.write_all(piece).and_then(|()| out.flush())
        }),
        Some(Fault::Stall { after, pause }) => {
            let sent = out.write_all(&body[..after.min(body.len())]);
            let _ = out.flush();
            thread::sleep(pause);
            sent
        }
        _ => out.write_all(body),
    };
    let _ = out.flush();
    let _ = out.shutdown(Shutdown::Both);
}

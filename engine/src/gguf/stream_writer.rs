//! Writing GGUF files whose tensor data is produced piece by piece, so that a file far larger
//! than the memory at hand can be written: the tensors are declared first (the header needs only
//! their shapes), then their data is appended in declaration order.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::error::GgufError;
use super::types::GgmlType;
use super::value::Value;
use super::writer::{GgufWriter, TensorDecl};

/// Metadata and declared tensors of a file whose data is streamed by [`GgufDataSink`].
#[derive(Default)]
pub struct GgufStreamWriter {
    /// Metadata and alignment; holds no tensors.
    header: GgufWriter,
    tensors: Vec<TensorDecl>,
}

impl GgufStreamWriter {
    /// An empty file with the default alignment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a metadata key, as [`GgufWriter::set`] does.
    pub fn set(&mut self, key: &str, value: Value) -> Result<(), GgufError> {
        self.header.set(key, value)
    }

    /// Declares the next tensor; its data is written later through [`GgufDataSink::write`].
    pub fn declare_tensor(
        &mut self,
        name: &str,
        ty: GgmlType,
        dims: &[u64],
    ) -> Result<(), GgufError> {
        let decl = TensorDecl::new(name, ty, dims, self.tensors.iter().map(|t| t.name.as_str()))?;
        self.tensors.push(decl);
        Ok(())
    }

    /// Writes the header to a temporary file beside `path` and returns the sink for the tensor
    /// data; [`GgufDataSink::finish`] moves the complete file to `path`.
    pub fn create(self, path: impl AsRef<Path>) -> Result<GgufDataSink, GgufError> {
        let path = path.as_ref().to_path_buf();
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(format!(".{}.partial", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let decls: Vec<&TensorDecl> = self.tensors.iter().collect();
        let header = self.header.header_bytes(&decls);
        let mut sink = GgufDataSink {
            out: None,
            tmp,
            path,
            header: self.header,
            tensors: self.tensors,
            current: None,
            written: 0,
        };
        let file = fs::File::create(&sink.tmp).map_err(|e| sink.io(e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header).map_err(|e| sink.io(e))?;
        sink.out = Some(out);
        Ok(sink)
    }
}

/// The tensor data of a file being written: each tensor is begun by name, in declaration order,
/// and filled with exactly its size in bytes. Dropped before [`GgufDataSink::finish`], it removes
/// the partial file.
pub struct GgufDataSink {
    out: Option<BufWriter<fs::File>>,
    tmp: PathBuf,
    path: PathBuf,
    header: GgufWriter,
    tensors: Vec<TensorDecl>,
    /// Index of the tensor being written.
    current: Option<usize>,
    /// Bytes of it written so far.
    written: u64,
}

impl GgufDataSink {
    /// Starts the data of tensor `name`, which must be the next declared one; the previous tensor
    /// must be complete.
    pub fn begin_tensor(&mut self, name: &str) -> Result<(), GgufError> {
        self.end_current()?;
        let next = self.current.map_or(0, |i| i + 1);
        match self.tensors.get(next) {
            Some(t) if t.name == name => {
                self.current = Some(next);
                self.written = 0;
                Ok(())
            }
            Some(t) => Err(bad_tensor(
                name,
                format!("the next declared tensor is `{}`", t.name),
            )),
            None => Err(bad_tensor(
                name,
                "every declared tensor was already written".into(),
            )),
        }
    }

    /// Appends bytes to the current tensor's data; more than its declared size is an error.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        let Some(index) = self.current else {
            return Err(bad_tensor(
                "(none)",
                "data written before any tensor was begun".into(),
            ));
        };
        let decl = &self.tensors[index];
        let total = self.written + bytes.len() as u64;
        if total > decl.len {
            return Err(bad_tensor(
                &decl.name,
                format!(
                    "{total} bytes written, {} with shape {:?} takes {}",
                    decl.ty, decl.dims, decl.len
                ),
            ));
        }
        self.written = total;
        self.write_raw(bytes)
    }

    /// Checks that every declared tensor was written in full, then flushes, syncs and renames
    /// the file into place.
    pub fn finish(mut self) -> Result<(), GgufError> {
        self.end_current()?;
        let done = self.current.map_or(0, |i| i + 1);
        if let Some(missing) = self.tensors.get(done) {
            return Err(bad_tensor(&missing.name, "no data was written".into()));
        }
        let out = self
            .out
            .take()
            .expect("the sink holds its file until finished");
        let synced = out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
            .and_then(|f| f.sync_all());
        synced
            .and_then(|()| fs::rename(&self.tmp, &self.path))
            .map_err(|e| {
                // Best effort, as on drop.
                let _ = fs::remove_file(&self.tmp);
                self.io(e)
            })
    }

    /// Checks that the current tensor is complete and pads it to the alignment.
    fn end_current(&mut self) -> Result<(), GgufError> {
        let Some(index) = self.current else {
            return Ok(());
        };
        let decl = &self.tensors[index];
        if self.written != decl.len {
            return Err(bad_tensor(
                &decl.name,
                format!("{} of its {} bytes were written", self.written, decl.len),
            ));
        }
        let padding = self.header.padding(decl.len);
        self.write_raw(&padding)
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        let out = self
            .out
            .as_mut()
            .expect("the sink holds its file until finished");
        out.write_all(bytes).map_err(|e| GgufError::Io {
            path: self.tmp.clone(),
            error: e,
        })
    }

    fn io(&self, error: io::Error) -> GgufError {
        GgufError::Io {
            path: self.tmp.clone(),
            error,
        }
    }
}

impl Drop for GgufDataSink {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            // Best effort: the partial file is useless, and the error that led here matters more.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn bad_tensor(name: &str, reason: String) -> GgufError {
    GgufError::BadTensorForWrite {
        tensor: name.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(dir: &Path) -> (GgufStreamWriter, GgufWriter, PathBuf) {
        let mut stream = GgufStreamWriter::new();
        let mut whole = GgufWriter::new();
        for w in [&mut stream.header, &mut whole] {
            w.set("general.architecture", Value::String("test".into()))
                .unwrap();
        }
        for (name, n) in [("a", 3u64), ("b", 40)] {
            stream.declare_tensor(name, GgmlType::F32, &[n]).unwrap();
            let data = (0..n * 4).map(|i| i as u8).collect();
            whole.add_tensor(name, GgmlType::F32, &[n], data).unwrap();
        }
        (stream, whole, dir.join("m.gguf"))
    }

    #[test]
    fn streamed_file_equals_the_in_memory_one() {
        let dir = tempfile::tempdir().unwrap();
        let (stream, whole, path) = declared(dir.path());
        let mut sink = stream.create(&path).unwrap();
        sink.begin_tensor("a").unwrap();
        sink.write(&(0..12).collect::<Vec<u8>>()).unwrap();
        sink.begin_tensor("b").unwrap();
        let b: Vec<u8> = (0..160).collect();
        for chunk in b.chunks(7) {
            sink.write(chunk).unwrap();
        }
        sink.finish().unwrap();
        assert_eq!(fs::read(&path).unwrap(), whole.to_bytes());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no partial file left"
        );
    }

    #[test]
    fn short_long_or_misordered_data_is_refused_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let message = |e: GgufError| e.to_string();

        let (stream, _, path) = declared(dir.path());
        let mut sink = stream.create(&path).unwrap();
        let err = sink.begin_tensor("b").unwrap_err();
        assert!(message(err).contains("next declared tensor is `a`"));

        sink.begin_tensor("a").unwrap();
        sink.write(&[0; 8]).unwrap();
        let err = sink.write(&[0; 8]).unwrap_err();
        assert!(message(err).contains("16 bytes written"), "too long");
        let err = sink.begin_tensor("b").unwrap_err();
        assert!(message(err).contains("8 of its 12 bytes"), "too short");
        drop(sink);

        let (stream, _, path) = declared(dir.path());
        let mut sink = stream.create(&path).unwrap();
        sink.begin_tensor("a").unwrap();
        sink.write(&[0; 12]).unwrap();
        let err = sink.finish().unwrap_err();
        assert!(message(err).contains("`b`: no data was written"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn duplicate_or_bad_declarations_are_refused() {
        let mut stream = GgufStreamWriter::new();
        stream.declare_tensor("a", GgmlType::F32, &[4]).unwrap();
        assert!(stream.declare_tensor("a", GgmlType::F32, &[4]).is_err());
        assert!(stream.declare_tensor("z", GgmlType::F32, &[0]).is_err());
        assert!(stream.declare_tensor("q", GgmlType::TQ2_0, &[100]).is_err());
    }
}

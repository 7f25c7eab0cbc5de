//! The file format of a territory backup. A short clear header (a magic line, the id of the
//! key, a random nonce prefix), then AES-256-GCM chunks in the STREAM construction: each
//! chunk's nonce is the prefix, the chunk's counter and a last-chunk flag, and the clear header
//! is the associated data of every chunk. So a wrong key is named before anything is
//! decrypted, and a changed, reordered, truncated or extended file is refused. Inside, the
//! clear stream is a sequence of frames: a tag byte, a big-endian u32 length, the payload.

use std::io::{Read, Write};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

const MAGIC: &[u8] = b"AIDANTS-CONNECT SAUVEGARDE 1\n";
/// Clear bytes per encrypted chunk.
const CHUNK: usize = 64 * 1024;
const TAG_LEN: usize = 16;
/// The largest frame a reader accepts (writers cut data into frames of at most 1 MiB).
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Why an archive cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("ce fichier n'est pas une sauvegarde d'Aidants Connect")]
    NotAnArchive,
    #[error(
        "cette sauvegarde a été chiffrée avec une autre clé (clé {found}, vous avez donné la clé {given})"
    )]
    WrongKey { found: String, given: String },
    #[error("sauvegarde tronquée : le fichier s'arrête avant sa fin")]
    Truncated,
    #[error("sauvegarde altérée : un bloc ne se déchiffre pas (bloc n° {0})")]
    Altered(u32),
    #[error("sauvegarde altérée : {0}")]
    Malformed(String),
    #[error("clé de sauvegarde invalide : 32 octets en base64 attendus")]
    InvalidKey,
    #[error("lecture ou écriture de la sauvegarde : {0}")]
    Io(#[from] std::io::Error),
}

/// The key encrypting backups: 32 random bytes, kept in base64 in a file apart from the
/// database (and from the backups).
#[derive(Clone)]
pub struct BackupKey([u8; 32]);

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupKey").field("id", &self.id()).finish()
    }
}

impl BackupKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        BackupKey(bytes)
    }

    pub fn from_base64(text: &str) -> Result<Self, ArchiveError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| ArchiveError::InvalidKey)?;
        Ok(BackupKey(
            bytes.try_into().map_err(|_| ArchiveError::InvalidKey)?,
        ))
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    fn id_bytes(&self) -> [u8; 8] {
        let digest = Sha256::new()
            .chain_update(b"aidants-connect backup key\n")
            .chain_update(self.0)
            .finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        id
    }

    /// What names the key without revealing it (16 hex digits), written in each archive.
    pub fn id(&self) -> String {
        hex::encode(self.id_bytes())
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }
}

fn nonce(prefix: &[u8; 7], counter: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Writes frames into an encrypted archive.
pub struct ArchiveWriter<W: Write> {
    out: W,
    cipher: Aes256Gcm,
    prefix: [u8; 7],
    header: Vec<u8>,
    counter: u32,
    buf: Vec<u8>,
    written: u64,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(mut out: W, key: &BackupKey) -> Result<Self, ArchiveError> {
        let mut prefix = [0u8; 7];
        rand::rng().fill_bytes(&mut prefix);
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&key.id_bytes());
        header.extend_from_slice(&prefix);
        out.write_all(&header)?;
        Ok(ArchiveWriter {
            out,
            cipher: key.cipher(),
            prefix,
            written: header.len() as u64,
            header,
            counter: 0,
            buf: Vec::with_capacity(2 * CHUNK),
        })
    }

    /// Appends one frame.
    pub fn frame(&mut self, tag: u8, payload: &[u8]) -> Result<(), ArchiveError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l as usize <= MAX_FRAME)
            .ok_or_else(|| ArchiveError::Malformed("bloc trop long".into()))?;
        self.buf.push(tag);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(payload);
        // Strictly more than a chunk: the last chunk is never empty unless the archive is.
        while self.buf.len() > CHUNK {
            let rest = self.buf.split_off(CHUNK);
            let chunk = std::mem::replace(&mut self.buf, rest);
            self.seal(&chunk, false)?;
        }
        Ok(())
    }

    fn seal(&mut self, clear: &[u8], last: bool) -> Result<(), ArchiveError> {
        let n = nonce(&self.prefix, self.counter, last);
        let sealed = self
            .cipher
            .encrypt(
                &n.into(),
                Payload {
                    msg: clear,
                    aad: &self.header,
                },
            )
            .map_err(|_| ArchiveError::Malformed("chiffrement impossible".into()))?;
        self.out.write_all(&(sealed.len() as u32).to_be_bytes())?;
        self.out.write_all(&sealed)?;
        self.written += 4 + sealed.len() as u64;
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| ArchiveError::Malformed("sauvegarde trop grande".into()))?;
        Ok(())
    }

    /// Seals the last chunk; returns the output and the archive's size in bytes.
    pub fn finish(mut self) -> Result<(W, u64), ArchiveError> {
        let rest = std::mem::take(&mut self.buf);
        self.seal(&rest, true)?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

/// Reads the frames of an encrypted archive, refusing it at the first chunk that does not
/// authenticate, and at the end if its last chunk is missing.
pub struct ArchiveReader<R: Read> {
    input: R,
    cipher: Aes256Gcm,
    prefix: [u8; 7],
    header: Vec<u8>,
    counter: u32,
    clear: Vec<u8>,
    pos: usize,
    ended: bool,
}

fn read_exact_or_truncated(input: &mut impl Read, buf: &mut [u8]) -> Result<(), ArchiveError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ArchiveError::Truncated,
        _ => ArchiveError::Io(e),
    })
}

impl<R: Read> ArchiveReader<R> {
    pub fn new(mut input: R, key: &BackupKey) -> Result<Self, ArchiveError> {
        let mut header = vec![0u8; MAGIC.len() + 8 + 7];
        input
            .read_exact(&mut header)
            .map_err(|_| ArchiveError::NotAnArchive)?;
        if &header[..MAGIC.len()] != MAGIC {
            return Err(ArchiveError::NotAnArchive);
        }
        let found = &header[MAGIC.len()..MAGIC.len() + 8];
        if found != key.id_bytes() {
            return Err(ArchiveError::WrongKey {
                found: hex::encode(found),
                given: key.id(),
            });
        }
        let mut prefix = [0u8; 7];
        prefix.copy_from_slice(&header[MAGIC.len() + 8..]);
        Ok(ArchiveReader {
            input,
            cipher: key.cipher(),
            prefix,
            header,
            counter: 0,
            clear: Vec::new(),
            pos: 0,
            ended: false,
        })
    }

    /// Decrypts the next chunk; false once the last one was read.
    fn fill(&mut self) -> Result<bool, ArchiveError> {
        if self.ended {
            return Ok(false);
        }
        let mut len = [0u8; 4];
        read_exact_or_truncated(&mut self.input, &mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if !(TAG_LEN..=CHUNK + TAG_LEN).contains(&len) {
            return Err(ArchiveError::Altered(self.counter));
        }
        let mut sealed = vec![0u8; len];
        read_exact_or_truncated(&mut self.input, &mut sealed)?;
        let open = |last: bool| {
            let n = nonce(&self.prefix, self.counter, last);
            self.cipher.decrypt(
                &n.into(),
                Payload {
                    msg: &sealed,
                    aad: &self.header,
                },
            )
        };
        let (clear, last) = match open(false) {
            Ok(clear) => (clear, false),
            Err(_) => (
                open(true).map_err(|_| ArchiveError::Altered(self.counter))?,
                true,
            ),
        };
        self.clear.drain(..self.pos);
        self.pos = 0;
        self.clear.extend_from_slice(&clear);
        self.counter = self.counter.wrapping_add(1);
        if last {
            self.ended = true;
            let mut extra = [0u8; 1];
            if self.input.read(&mut extra)? != 0 {
                return Err(ArchiveError::Malformed(
                    "des données suivent le dernier bloc".into(),
                ));
            }
        }
        Ok(true)
    }

    fn take(&mut self, n: usize) -> Result<Option<Vec<u8>>, ArchiveError> {
        while self.clear.len() - self.pos < n {
            if !self.fill()? {
                return if self.clear.len() == self.pos {
                    Ok(None)
                } else {
                    Err(ArchiveError::Truncated)
                };
            }
        }
        let out = self.clear[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(Some(out))
    }

    /// The next frame (tag, payload), or None at the archive's authenticated end.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, ArchiveError> {
        let Some(head) = self.take(5)? else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(ArchiveError::Malformed("bloc trop long".into()));
        }
        match self.take(len)? {
            Some(payload) => Ok(Some((head[0], payload))),
            None if len == 0 => Ok(Some((head[0], Vec::new()))),
            None => Err(ArchiveError::Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(key: &BackupKey, frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut w = ArchiveWriter::new(Vec::new(), key).expect("écriture");
        for (tag, payload) in frames {
            w.frame(*tag, payload).expect("bloc");
        }
        w.finish().expect("fin").0
    }

    fn read_all(key: &BackupKey, bytes: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, ArchiveError> {
        let mut r = ArchiveReader::new(bytes, key)?;
        let mut out = Vec::new();
        while let Some(f) = r.next_frame()? {
            out.push(f);
        }
        Ok(out)
    }

    fn frames() -> Vec<(u8, Vec<u8>)> {
        // Larger than several chunks, with frames straddling chunk boundaries.
        (0..40u8)
            .map(|i| (b'D', vec![i; 7_000 * usize::from(i % 5 + 1)]))
            .chain([(b'Z', Vec::new())])
            .collect()
    }

    #[test]
    fn frames_come_back_as_written_and_the_clear_text_is_not_in_the_file() {
        let key = BackupKey::generate();
        let mut frames = frames();
        frames.push((b'H', b"Jeanne Martin, 12 rue des Lilas".to_vec()));
        let bytes = archive(&key, &frames);
        assert_eq!(read_all(&key, &bytes).expect("lecture"), frames);
        assert!(!bytes.windows(12).any(|w| w == b"Jeanne Marti".as_slice()));
        let empty = archive(&key, &[]);
        assert_eq!(read_all(&key, &empty).expect("vide"), vec![]);
    }

    #[test]
    fn a_wrong_key_a_changed_byte_a_cut_and_an_extension_are_each_refused() {
        let key = BackupKey::generate();
        let bytes = archive(&key, &frames());
        let other = BackupKey::generate();
        assert!(matches!(
            read_all(&other, &bytes),
            Err(ArchiveError::WrongKey { .. })
        ));
        let mut changed = bytes.clone();
        let middle = changed.len() / 2;
        changed[middle] ^= 1;
        assert!(matches!(
            read_all(&key, &changed),
            Err(ArchiveError::Altered(_))
        ));
        // Cut exactly at a chunk boundary: every chunk left authenticates, the end is missing.
        let first_chunk = MAGIC.len() + 15 + 4 + CHUNK + TAG_LEN;
        assert!(matches!(
            read_all(&key, &bytes[..first_chunk]),
            Err(ArchiveError::Truncated)
        ));
        assert!(matches!(
            read_all(&key, &bytes[..bytes.len() - 3]),
            Err(ArchiveError::Truncated)
        ));
        let mut extended = bytes.clone();
        extended.push(0);
        assert!(matches!(
            read_all(&key, &extended),
            Err(ArchiveError::Malformed(_))
        ));
        let mut header = bytes.clone();
        header[MAGIC.len() + 9] ^= 1; // the nonce prefix, bound as associated data
        assert!(matches!(
            read_all(&key, &header),
            Err(ArchiveError::Altered(0))
        ));
        assert!(matches!(
            read_all(&key, b"PGDMP not ours"),
            Err(ArchiveError::NotAnArchive)
        ));
        let round = BackupKey::from_base64(&key.to_base64()).expect("clé");
        assert_eq!(round.id(), key.id());
        assert!(BackupKey::from_base64("dHJvcCBjb3VydA==").is_err());
    }
}

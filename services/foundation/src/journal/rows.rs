//! PostgreSQL's binary `COPY … TO STDOUT (FORMAT binary)` output, read row by row without
//! decoding: each row's fields are handed over as slices of what arrived. Verification reads a
//! territory's whole journal this way (about ten times fewer steps per entry than decoding
//! each row into an [`super::Entry`]).
//!
//! The format (PostgreSQL documentation, « COPY », binary format): an 11-byte signature, a
//! 32-bit flags field, a 32-bit header extension length and the extension; then each row as a
//! 16-bit field count followed by each field's 32-bit length (−1 for NULL) and bytes; then a
//! field count of −1.

/// The fixed start of the format.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Reads the rows of `N` fields of a binary `COPY`, whatever the boundaries of the chunks it
/// arrives in.
#[derive(Debug, Default)]
pub(super) struct BinaryRows<const N: usize> {
    /// Bytes of an incomplete header or row, waiting for the next chunk.
    carry: Vec<u8>,
    header_read: bool,
    ended: bool,
}

/// One row's fields (`None` for NULL).
pub(super) type Fields<'a, const N: usize> = [Option<&'a [u8]>; N];

impl<const N: usize> BinaryRows<N> {
    /// Reads `chunk`, calling `row` for each complete row in it.
    pub(super) fn feed(
        &mut self,
        chunk: &[u8],
        mut row: impl FnMut(&Fields<'_, N>) -> Result<(), String>,
    ) -> Result<(), String> {
        let joined;
        let data: &[u8] = if self.carry.is_empty() {
            chunk
        } else {
            self.carry.extend_from_slice(chunk);
            joined = std::mem::take(&mut self.carry);
            &joined
        };
        let mut at = 0;
        if !self.header_read {
            match header_len(data)? {
                Some(n) => {
                    at = n;
                    self.header_read = true;
                }
                None => {
                    self.carry = data.to_vec();
                    return Ok(());
                }
            }
        }
        while at < data.len() {
            if self.ended {
                return Err("données après la fin de la copie".into());
            }
            match next_row::<N>(&data[at..])? {
                None => break,
                Some((None, used)) => {
                    self.ended = true;
                    at += used;
                }
                Some((Some(fields), used)) => {
                    row(&fields)?;
                    at += used;
                }
            }
        }
        self.carry = data[at..].to_vec();
        Ok(())
    }

    /// Whether the copy ended as it should: its end mark read, nothing left over.
    pub(super) fn complete(&self) -> bool {
        self.ended && self.carry.is_empty()
    }
}

/// The header's length, once all of it is there.
fn header_len(data: &[u8]) -> Result<Option<usize>, String> {
    if data.len() < SIGNATURE.len() + 8 {
        return Ok(None);
    }
    if data[..SIGNATURE.len()] != SIGNATURE[..] {
        return Err("copie binaire sans sa signature".into());
    }
    let extension = be_u32(&data[15..19]) as usize;
    Ok((data.len() >= 19 + extension).then_some(19 + extension))
}

/// The row at the start of `data` and the bytes it takes; `Some((None, 2))` for the end mark;
/// `None` when the row is not all there yet.
#[allow(clippy::type_complexity)]
fn next_row<const N: usize>(data: &[u8]) -> Result<Option<(Option<Fields<'_, N>>, usize)>, String> {
    let Some(count) = data.get(..2) else {
        return Ok(None);
    };
    let count = i16::from_be_bytes([count[0], count[1]]);
    if count == -1 {
        return Ok(Some((None, 2)));
    }
    if usize::try_from(count).ok() != Some(N) {
        return Err(format!("ligne de {count} champs, {N} attendus"));
    }
    let mut fields = [None; N];
    let mut at = 2;
    for field in &mut fields {
        let Some(len) = data.get(at..at + 4) else {
            return Ok(None);
        };
        let len = be_u32(len) as i32;
        at += 4;
        if len == -1 {
            continue;
        }
        let len = usize::try_from(len).map_err(|_| format!("longueur de champ {len}"))?;
        let Some(bytes) = data.get(at..at + len) else {
            return Ok(None);
        };
        *field = Some(bytes);
        at += len;
    }
    Ok(Some((Some(fields), at)))
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of two rows of two fields (the second row with a NULL), then the end mark.
    fn sample() -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&3u32.to_be_bytes());
        out.extend_from_slice(b"ext");
        for (a, b) in [(&b"un"[..], Some(&b"deux"[..])), (&b"trois"[..], None)] {
            out.extend_from_slice(&2i16.to_be_bytes());
            out.extend_from_slice(&(a.len() as i32).to_be_bytes());
            out.extend_from_slice(a);
            match b {
                Some(b) => {
                    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    out.extend_from_slice(b);
                }
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    /// The rows read (first field, second field) and whether the copy was complete.
    type Read = (Vec<(Vec<u8>, Option<Vec<u8>>)>, bool);

    fn read(chunks: &[&[u8]]) -> Result<Read, String> {
        let mut rows = BinaryRows::<2>::default();
        let mut seen = Vec::new();
        for chunk in chunks {
            rows.feed(chunk, |f| {
                seen.push((f[0].unwrap_or_default().to_vec(), f[1].map(<[u8]>::to_vec)));
                Ok(())
            })?;
        }
        Ok((seen, rows.complete()))
    }

    #[test]
    fn rows_are_read_whatever_the_chunks_boundaries() {
        let data = sample();
        let expected = vec![
            (b"un".to_vec(), Some(b"deux".to_vec())),
            (b"trois".to_vec(), None),
        ];
        assert_eq!(read(&[&data]), Ok((expected.clone(), true)));
        // Every split in two, and byte by byte.
        for cut in 0..=data.len() {
            let (a, b) = data.split_at(cut);
            assert_eq!(
                read(&[a, b]),
                Ok((expected.clone(), true)),
                "coupure à {cut}"
            );
        }
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(read(&bytes), Ok((expected, true)));
    }

    #[test]
    fn a_truncated_or_foreign_copy_is_not_taken_for_a_complete_one() {
        let data = sample();
        let (_, complete) = read(&[&data[..data.len() - 2]]).expect("lisible");
        assert!(!complete, "sans sa marque de fin, la copie est incomplète");
        let (_, complete) = read(&[&data[..data.len() - 5]]).expect("lisible");
        assert!(!complete);
        let mut foreign = data.clone();
        foreign[0] = b'X';
        assert!(read(&[&foreign]).is_err());
        let mut wide = data.clone();
        wide[19 + 3 + 1] = 3; // the first row claims three fields
        assert!(read(&[&wide]).is_err());
        let mut trailing = data;
        trailing.push(0);
        assert!(read(&[&trailing]).is_err());
    }
}

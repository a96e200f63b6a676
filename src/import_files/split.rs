//! Splits an import stream into its items without holding the file: the elements of top-level
//! arrays (also several arrays in a row, as `gh api --paginate` prints pages) and top-level
//! values (JSON Lines, concatenated objects). Each item is handed on as its own bytes and parsed
//! on its own, so a malformed item fails alone; only a file cut off inside a value (or an item
//! beyond [`MAX_ITEM`]) stops the file at that point.

use std::io::BufRead;

/// The largest single item accepted: a GitHub issue object, or a search page of 100, is far
/// smaller; anything bigger is not an export of ours or GitHub's.
pub const MAX_ITEM: usize = 64 << 20;

/// Why a stream could not be split further (items before it were handed on).
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("not valid JSON or JSON Lines at byte {offset}: {why}")]
    Syntax { offset: u64, why: &'static str },
}

pub struct Splitter<R> {
    reader: R,
    /// Bytes consumed so far (for messages and progress).
    offset: u64,
    /// Inside a top-level array: its elements are the items.
    in_array: bool,
}

impl<R: BufRead> Splitter<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            offset: 0,
            in_array: false,
        }
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next item's bytes, `None` at the end of the stream.
    pub fn next_item(&mut self) -> Result<Option<Vec<u8>>, SplitError> {
        loop {
            if self.in_array {
                match self.skip(true)? {
                    None => return Err(self.syntax("the file ends inside an array")),
                    Some(b']') => {
                        self.consume(1);
                        self.in_array = false;
                    }
                    Some(_) => return self.value().map(Some),
                }
                continue;
            }
            match self.skip(false)? {
                None => return Ok(None),
                Some(b'[') => {
                    self.consume(1);
                    self.in_array = true;
                }
                Some(_) => return self.value().map(Some),
            }
        }
    }

    fn syntax(&self, why: &'static str) -> SplitError {
        SplitError::Syntax {
            offset: self.offset,
            why,
        }
    }

    fn consume(&mut self, n: usize) {
        self.reader.consume(n);
        self.offset += n as u64;
    }

    /// Skips whitespace (and, between array elements, commas); returns the next byte unread.
    fn skip(&mut self, commas: bool) -> Result<Option<u8>, SplitError> {
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            let n = buf
                .iter()
                .take_while(|b| b.is_ascii_whitespace() || (commas && **b == b','))
                .count();
            let next = buf.get(n).copied();
            self.consume(n);
            if next.is_some() {
                return Ok(next);
            }
        }
    }

    /// Captures one value from the current byte: an object or array to its matching bracket
    /// (brackets inside strings do not count), a string to its closing quote, anything else to
    /// the next delimiter.
    fn value(&mut self) -> Result<Vec<u8>, SplitError> {
        let mut out = Vec::new();
        let mut depth = 0usize;
        let mut in_str = false;
        let mut escaped = false;
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                if depth == 0 && !in_str && !out.is_empty() {
                    return Ok(out);
                }
                return Err(self.syntax("the file ends inside a value"));
            }
            let mut used = 0;
            let mut end = false;
            for &b in buf {
                if in_str {
                    used += 1;
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_str = false;
                        if depth == 0 {
                            end = true;
                            break;
                        }
                    }
                    continue;
                }
                match b {
                    b'"' => {
                        in_str = true;
                        used += 1;
                    }
                    b'{' | b'[' => {
                        depth += 1;
                        used += 1;
                    }
                    // A closing bracket at depth 0 ends a scalar and belongs to the array.
                    b'}' | b']' if depth == 0 => {
                        end = true;
                        break;
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        used += 1;
                        if depth == 0 {
                            end = true;
                            break;
                        }
                    }
                    b',' if depth == 0 => {
                        end = true;
                        break;
                    }
                    _ if depth == 0 && b.is_ascii_whitespace() => {
                        end = true;
                        break;
                    }
                    _ => used += 1,
                }
            }
            out.extend_from_slice(&buf[..used]);
            self.consume(used);
            if end {
                return Ok(out);
            }
            if out.len() > MAX_ITEM {
                return Err(self.syntax("one item is larger than 64 MB"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(input: &[u8], buf: usize) -> Result<Vec<String>, String> {
        let mut s = Splitter::new(std::io::BufReader::with_capacity(buf, input));
        let mut out = Vec::new();
        loop {
            match s.next_item() {
                Ok(Some(i)) => out.push(String::from_utf8(i).unwrap()),
                Ok(None) => return Ok(out),
                Err(e) => return Err(format!("{out:?} then {e}")),
            }
        }
    }

    #[test]
    fn splits_arrays_pages_lines_and_objects_at_any_buffer_size() {
        let inputs: [&[u8]; 4] = [
            br#"[{"a":"x]}"},{"a":[1,{"b":2}]}]"#,
            b"{\"a\":\"x]}\"}\n{\"a\":[1,{\"b\":2}]}\n",
            br#" [{"a":"x]}"}] [ {"a":[1,{"b":2}]} ]"#,
            br#"{"a":"x]}"}{"a":[1,{"b":2}]}"#,
        ];
        for input in inputs {
            for buf in [1, 2, 7, 8192] {
                assert_eq!(
                    items(input, buf).unwrap(),
                    vec![r#"{"a":"x]}"}"#, r#"{"a":[1,{"b":2}]}"#],
                    "{} with a {buf}-byte buffer",
                    String::from_utf8_lossy(input)
                );
            }
        }
        // Escaped quotes, scalars and nested arrays are items too (refused when converted).
        assert_eq!(
            items(br#"[{"t":"say \"}\""}, 5, "s", [1]]"#, 3).unwrap(),
            vec![r#"{"t":"say \"}\""}"#, "5", "\"s\"", "[1]"]
        );
        assert_eq!(items(b"  \n", 4).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_cut_off_file_keeps_the_items_before_the_cut() {
        let err = items(b"[{\"a\":1},{\"a\":", 4).unwrap_err();
        assert!(err.starts_with(r#"["{\"a\":1}"] then"#), "{err}");
        assert!(err.contains("ends inside a value"), "{err}");
        assert!(items(b"[{\"a\":1}", 4)
            .unwrap_err()
            .contains("ends inside an array"));
    }
}

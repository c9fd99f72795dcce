//! Reads only the fields a rule set needs out of an event's JSON bytes. A trie of the wanted paths
//! guides a scanner that checks the whole document is JSON but builds nothing for the parts no rule
//! reads: it copies the wanted scalars into reused slots, and hands only wanted objects and arrays
//! to serde_json.
//!
//! What counts as JSON is exactly what serde_json accepted when it drove this extraction: the
//! document's grammar is checked everywhere; strings are checked for UTF-8 and escapes (including
//! surrogate pairs) and numbers for range where a value or key is read (object keys on the wanted
//! paths, the values at wanted paths), while skipped strings need only valid escapes and no control
//! characters, as serde_json's skipping does. An error message is serde_json's for the document.

use super::fields::FieldTable;
use serde_json::{Number, Value};

#[derive(Debug, Default)]
pub struct PathTrie {
    slot: Option<usize>,
    children: Vec<(String, PathTrie)>,
    /// Bit `n` (63 for 63 or more): some child's key is `n` bytes long. Most keys of an event name
    /// no child, and their length alone tells.
    key_lengths: u64,
}

/// Byte equality compared in place: keys are short, and a call to `memcmp` for each key of an
/// event that happens to have a wanted key's length cost more than the comparison.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn length_bit(length: usize) -> u64 {
    1 << length.min(63)
}

/// The values of the wanted fields of the event being matched. Buffers are reused from event to
/// event: a string field is copied into the string its slot already holds.
#[derive(Debug, Default)]
pub struct Slots {
    values: Vec<Value>,
    filled: Vec<bool>,
}

impl Slots {
    pub fn new(len: usize) -> Slots {
        Slots { values: vec![Value::Null; len], filled: vec![false; len] }
    }

    /// The field's value, if the event has it.
    pub fn get(&self, slot: usize) -> Option<&Value> {
        match self.filled.get(slot) {
            Some(true) => self.values.get(slot),
            _ => None,
        }
    }

    fn clear(&mut self) {
        self.filled.iter_mut().for_each(|filled| *filled = false);
    }

    /// The value to overwrite for `slot`, now marked as present.
    fn fill(&mut self, slot: usize) -> Option<&mut Value> {
        *self.filled.get_mut(slot)? = true;
        self.values.get_mut(slot)
    }
}

impl PathTrie {
    pub fn new(fields: &FieldTable) -> PathTrie {
        let mut root = PathTrie::default();
        for (slot, path) in fields.paths().iter().enumerate() {
            let mut node = &mut root;
            for key in path {
                let index = match node.children.iter().position(|(k, _)| k == key) {
                    Some(index) => index,
                    None => {
                        node.children.push((key.clone(), PathTrie::default()));
                        node.key_lengths |= length_bit(key.len());
                        node.children.len() - 1
                    }
                };
                node = match node.children.get_mut(index) {
                    Some((_, child)) => child,
                    None => return root,
                };
            }
            node.slot = Some(slot);
        }
        root
    }

    fn child(&self, key: &[u8]) -> Option<&PathTrie> {
        if self.key_lengths & length_bit(key.len()) == 0 {
            return None;
        }
        self.children.iter().find(|(k, _)| same_bytes(k.as_bytes(), key)).map(|(_, child)| child)
    }

    /// Fills this node's slot and its descendants' from an already parsed value.
    fn fill_from(&self, value: &Value, slots: &mut Slots) {
        if let Some(slot) = self.slot.and_then(|s| slots.fill(s)) {
            slot.clone_from(value);
        }
        for (key, child) in &self.children {
            let inner = match value {
                Value::Object(map) => map.get(key),
                Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            if let Some(inner) = inner {
                child.fill_from(inner, slots);
            }
        }
    }

    /// Checks that `bytes` is one JSON document and fills `slots` from it; a document that is not
    /// an object fills nothing.
    pub fn extract(&self, bytes: &[u8], slots: &mut Slots, frames: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        slots.clear();
        frames.clear();
        let mut scanner = Scanner { bytes, pos: 0, depth: 0, frames };
        let scanned = scanner.wanted(self, slots).and_then(|()| scanner.end());
        scanned.map_err(|Malformed| describe(bytes))
    }
}

/// The bytes are not JSON (serde_json says why: see [`describe`]).
struct Malformed;

type Scan<T> = Result<T, Malformed>;

/// serde_json's error for a document the scanner refused.
fn describe(bytes: &[u8]) -> serde_json::Error {
    match serde_json::from_slice::<Value>(bytes) {
        Err(error) => error,
        Ok(_) => serde::de::Error::custom("not valid JSON where a rule reads it"),
    }
}

const ONES: u64 = u64::MAX / 255;
const HIGH_BITS: u64 = ONES << 7;

/// Bytes of `word` (as the high bit of each byte) equal to `byte`; exact up to the first match.
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let diff = word ^ (ONES * u64::from(byte));
    diff.wrapping_sub(ONES) & !diff & HIGH_BITS
}

/// Bytes of `word` below `limit` (at most 0x80); exact up to the first match.
fn bytes_below(word: u64, limit: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(limit)) & !word & HIGH_BITS
}

/// Bytes of `word` that stop a run of plain string bytes: a quote, a backslash or a control
/// character; exact up to the first match.
#[inline(always)]
fn string_stops(word: u64) -> u64 {
    // `byte ^ 2` is below 0x21 exactly for the quote (0x22 becomes 0x20) and the control
    // characters, so one comparison finds both.
    bytes_below(word ^ (ONES * 0x02), 0x21) | bytes_equal(word, b'\\')
}

/// [`string_stops`] and bytes outside ASCII: a key that runs to its closing quote without
/// stopping needs no UTF-8 check.
#[inline(always)]
fn ascii_key_stops(word: u64) -> u64 {
    string_stops(word) | (word & HIGH_BITS)
}

enum StringParts<'b> {
    /// No escapes: the bytes between the quotes, not yet checked for UTF-8.
    Plain(&'b [u8]),
    Unescaped(String),
}

/// Bytes of `word` (as the high bit of each byte) that are not ASCII digits.
fn non_digits(word: u64) -> u64 {
    // A digit is 0x30..=0x39: its high nibble is 3, and adding 6 keeps it there.
    let high_nibble_not_3 = (word & (ONES * 0xF0)) ^ (ONES * 0x30);
    let above_9 = (word.wrapping_add(ONES * 0x06) & (ONES * 0xF0)) ^ (ONES * 0x30);
    let bad = high_nibble_not_3 | above_9;
    // A byte with any bit set in `bad` is not a digit: gather its bits into its high bit.
    let low_bits = ONES * 0x7F;
    ((bad & low_bits).wrapping_add(low_bits) | bad) & HIGH_BITS
}

/// The first position from `pos` holding a byte that `stops` marks (or the end): where a run of
/// plain string bytes stops. Eight bytes at a time.
#[inline(always)]
fn string_stop(bytes: &[u8], mut pos: usize, stops: impl Fn(u64) -> u64) -> usize {
    while let Some(chunk) = bytes.get(pos..pos + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        let found = stops(u64::from_le_bytes(chunk));
        if found != 0 {
            return pos + found.trailing_zeros() as usize / 8;
        }
        pos += 8;
    }
    // One byte as a word: its own mark is exact.
    while bytes.get(pos).is_some_and(|&b| stops(u64::from(b)) & 0x80 == 0) {
        pos += 1;
    }
    pos
}

/// serde_json refuses a document with this many arrays and objects nested along a path it
/// deserializes (values it skips may nest without limit).
const NESTING_LIMIT: usize = 128;

/// How many arrays and objects nest in `value` (0 for a string, number, boolean or null).
fn nesting(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// The longest plain unsigned integer whose value always fits `u64`.
const PLAIN_INTEGER_DIGITS: usize = 18;

/// Stands for the end of the input where a byte is read: 0 is never valid where a token or a
/// string's next byte is expected, so the end needs no case of its own.
const END: u8 = 0;

struct Scanner<'b, 'f> {
    bytes: &'b [u8],
    pos: usize,
    /// Objects on wanted paths open around the current position (the document's own included).
    depth: usize,
    /// Open arrays and objects of the value being skipped (reused between events).
    frames: &'f mut Vec<u8>,
}

impl<'b> Scanner<'b, '_> {
    #[inline]
    fn byte(&self) -> u8 {
        self.bytes.get(self.pos).copied().unwrap_or(END)
    }

    /// The next byte that is not whitespace, left unconsumed.
    #[inline]
    fn token(&mut self) -> u8 {
        let mut byte = self.byte();
        while byte <= b' ' && matches!(byte, b' ' | b'\n' | b'\t' | b'\r') {
            self.pos += 1;
            byte = self.byte();
        }
        byte
    }

    /// Consumes `byte` after optional whitespace.
    #[inline]
    fn expect(&mut self, byte: u8) -> Scan<()> {
        if self.token() == byte {
            self.pos += 1;
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn end(&mut self) -> Scan<()> {
        match self.token() {
            END if self.pos >= self.bytes.len() => Ok(()),
            _ => Err(Malformed),
        }
    }

    /// The value at trie node `node`: objects on a wanted path are walked key by key, wanted
    /// objects and arrays are parsed whole (arrays are addressed by index, `items.0`).
    fn wanted(&mut self, node: &PathTrie, slots: &mut Slots) -> Scan<()> {
        match (self.token(), node.slot) {
            (b'{', None) => self.object(node, slots),
            (b'{' | b'[', _) => {
                let value = self.parsed_value()?;
                if self.depth + nesting(&value) >= NESTING_LIMIT {
                    return Err(Malformed);
                }
                node.fill_from(&value, slots);
                Ok(())
            }
            (_, Some(slot)) => match slots.fill(slot) {
                Some(target) => self.scalar(target),
                None => self.scalar(&mut Value::Null),
            },
            (_, None) => self.scalar(&mut Value::Null),
        }
    }

    fn object(&mut self, node: &PathTrie, slots: &mut Slots) -> Scan<()> {
        self.pos += 1;
        self.depth += 1;
        if self.depth >= NESTING_LIMIT {
            return Err(Malformed);
        }
        if self.token() == b'}' {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.expect(b'"')?;
            let child = self.key_child(node)?;
            self.expect(b':')?;
            match child {
                Some(child) => self.wanted(child, slots)?,
                None => self.skip_value()?,
            }
            match self.token() {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(Malformed),
            }
        }
    }

    /// A whole value parsed by serde_json, from the current position.
    fn parsed_value(&mut self) -> Scan<Value> {
        let rest = self.bytes.get(self.pos..).ok_or(Malformed)?;
        let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<Value>();
        let value = values.next().ok_or(Malformed)?.map_err(|_| Malformed)?;
        self.pos += values.byte_offset();
        Ok(value)
    }

    /// Reads an object key (after its opening quote), checked as serde_json checks a key, and
    /// returns the child of `node` it names.
    #[inline]
    fn key_child<'t>(&mut self, node: &'t PathTrie) -> Scan<Option<&'t PathTrie>> {
        let start = self.pos;
        let stop = string_stop(self.bytes, start, ascii_key_stops);
        if self.bytes.get(stop) == Some(&b'"') {
            self.pos = stop + 1;
            return Ok(node.child(self.bytes.get(start..stop).ok_or(Malformed)?));
        }
        match self.string_parts()? {
            StringParts::Plain(raw) if std::str::from_utf8(raw).is_ok() => Ok(node.child(raw)),
            StringParts::Plain(_) => Err(Malformed),
            StringParts::Unescaped(text) => Ok(node.child(text.as_bytes())),
        }
    }

    /// A string (after its opening quote) as its raw bytes when it has no escapes, else unescaped
    /// by serde_json, which checks it whole (UTF-8, surrogate pairs).
    #[inline(always)]
    fn string_parts(&mut self) -> Scan<StringParts<'b>> {
        let start = self.pos;
        let stop = string_stop(self.bytes, start, string_stops);
        if self.bytes.get(stop) == Some(&b'"') {
            self.pos = stop + 1;
            return self.bytes.get(start..stop).map(StringParts::Plain).ok_or(Malformed);
        }
        self.pos = stop;
        self.skip_string_rest()?;
        let quoted = self.bytes.get(start - 1..self.pos).ok_or(Malformed)?;
        serde_json::from_slice::<String>(quoted).map(StringParts::Unescaped).map_err(|_| Malformed)
    }

    /// Skips a string (after its opening quote) as serde_json skips one: escapes must be valid,
    /// control characters are refused, the text is not decoded.
    #[inline(always)]
    fn skip_string(&mut self) -> Scan<()> {
        self.pos = string_stop(self.bytes, self.pos, string_stops);
        if self.byte() == b'"' {
            self.pos += 1;
            return Ok(());
        }
        self.skip_string_rest()
    }

    /// Finishes skipping a string from its first quote, backslash or control character.
    fn skip_string_rest(&mut self) -> Scan<()> {
        loop {
            match self.byte() {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.pos += 1;
                    self.skip_escape()?;
                }
                _ => return Err(Malformed),
            }
            self.pos = string_stop(self.bytes, self.pos, string_stops);
        }
    }

    fn skip_escape(&mut self) -> Scan<()> {
        let escape = self.byte();
        self.pos += 1;
        match escape {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(()),
            b'u' => {
                let digits = self.bytes.get(self.pos..self.pos + 4).ok_or(Malformed)?;
                if digits.iter().all(u8::is_ascii_hexdigit) {
                    self.pos += 4;
                    Ok(())
                } else {
                    Err(Malformed)
                }
            }
            _ => Err(Malformed),
        }
    }

    /// Reads a wanted string, number or literal into `target`, reusing its string buffer.
    fn scalar(&mut self, target: &mut Value) -> Scan<()> {
        match self.token() {
            b'"' => {
                self.pos += 1;
                match self.string_parts()? {
                    StringParts::Plain(raw) => {
                        let plain = std::str::from_utf8(raw).map_err(|_| Malformed)?;
                        match target {
                            Value::String(text) => {
                                text.clear();
                                text.push_str(plain);
                            }
                            other => *other = Value::String(plain.to_owned()),
                        }
                    }
                    StringParts::Unescaped(text) => *target = Value::String(text),
                }
            }
            b'-' | b'0'..=b'9' => *target = Value::Number(self.number()?),
            b't' => {
                self.literal(b"true")?;
                *target = Value::Bool(true);
            }
            b'f' => {
                self.literal(b"false")?;
                *target = Value::Bool(false);
            }
            b'n' => {
                self.literal(b"null")?;
                *target = Value::Null;
            }
            _ => return Err(Malformed),
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Scan<()> {
        if self.bytes.get(self.pos..).is_some_and(|rest| rest.starts_with(word)) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// A wanted number, with serde_json's value: plain unsigned integers directly, anything else
    /// (signs, fractions, exponents, huge values) through serde_json.
    fn number(&mut self) -> Scan<Number> {
        let start = self.pos;
        self.skip_number()?;
        let text = self.bytes.get(start..self.pos).ok_or(Malformed)?;
        if text.len() <= PLAIN_INTEGER_DIGITS && text.iter().all(u8::is_ascii_digit) {
            let value = text.iter().fold(0u64, |n, &digit| n * 10 + u64::from(digit - b'0'));
            return Ok(Number::from(value));
        }
        let text = std::str::from_utf8(text).map_err(|_| Malformed)?;
        text.parse::<Number>().map_err(|_| Malformed)
    }

    /// Skips ASCII digits, eight at a time while they last; whether there was at least one.
    #[inline]
    fn skip_digits(&mut self) -> bool {
        let start = self.pos;
        while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
            let others = non_digits(u64::from_le_bytes(chunk));
            if others != 0 {
                self.pos += others.trailing_zeros() as usize / 8;
                return self.pos > start;
            }
            self.pos += 8;
        }
        while self.byte().is_ascii_digit() {
            self.pos += 1;
        }
        self.pos > start
    }

    /// JSON's number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn skip_number(&mut self) -> Scan<()> {
        if self.byte() == b'-' {
            self.pos += 1;
        }
        match self.byte() {
            b'0' => {
                self.pos += 1;
                if self.byte().is_ascii_digit() {
                    return Err(Malformed);
                }
            }
            b'1'..=b'9' => {
                self.skip_digits();
            }
            _ => return Err(Malformed),
        }
        if self.byte() == b'.' {
            self.pos += 1;
            if !self.skip_digits() {
                return Err(Malformed);
            }
        }
        if let b'e' | b'E' = self.byte() {
            self.pos += 1;
            if let b'+' | b'-' = self.byte() {
                self.pos += 1;
            }
            if !self.skip_digits() {
                return Err(Malformed);
            }
        }
        Ok(())
    }

    /// Skips a string, number or literal; `Ok(false)` when the value opens an array or object
    /// instead (the bracket is left unread).
    #[inline(always)]
    fn skip_scalar(&mut self) -> Scan<bool> {
        match self.token() {
            b'"' => {
                self.pos += 1;
                self.skip_string()?;
            }
            b'-' | b'0'..=b'9' => self.skip_number()?,
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'[' | b'{' => return Ok(false),
            _ => return Err(Malformed),
        }
        Ok(true)
    }

    /// Skips one value no rule reads. Nesting is tracked in `frames`, not by recursion, so depth
    /// is unlimited as in serde_json's skipping.
    fn skip_value(&mut self) -> Scan<()> {
        if self.skip_scalar()? {
            return Ok(());
        }
        let floor = self.frames.len();
        loop {
            if !self.skip_scalar()? {
                let open = self.byte();
                self.pos += 1;
                if !self.close_empty(open) {
                    self.frames.push(open);
                    self.begin_member(open)?;
                    continue;
                }
            }
            self.after_value(floor)?;
            if self.frames.len() == floor {
                return Ok(());
            }
        }
    }

    /// After `[` or `{`: consumes the closing bracket of an empty array or object.
    fn close_empty(&mut self, open: u8) -> bool {
        let close = if open == b'[' { b']' } else { b'}' };
        if self.token() == close {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Before a member of an open array or object: an object member starts with its key.
    fn begin_member(&mut self, frame: u8) -> Scan<()> {
        if frame == b'{' {
            self.expect(b'"')?;
            self.skip_string()?;
            self.expect(b':')?;
        }
        Ok(())
    }

    /// After a value inside the skipped one: a comma (and the next key) or closing brackets, until
    /// a member follows or the frames are back to `floor`.
    fn after_value(&mut self, floor: usize) -> Scan<()> {
        while self.frames.len() > floor {
            let frame = self.frames.last().copied().ok_or(Malformed)?;
            let close = if frame == b'[' { b']' } else { b'}' };
            match self.token() {
                b',' => {
                    self.pos += 1;
                    return self.begin_member(frame);
                }
                byte if byte == close => {
                    self.pos += 1;
                    self.frames.pop();
                }
                _ => return Err(Malformed),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! Personal data masked in free text, as the redaction plugin's Python does it
//! (`plugins/redaction/src/cityhub_redaction/transform.py`, `Redaction.mask_text`), for a whole batch of texts:
//! every run of digits and dashes is found; a run that is one of the known shapes whole (a mobile number, a
//! landline, an ID-card number) is masked as that shape, any other run is searched for the shapes inside it.
//!
//! The patterns are the plugin's own Python regular expressions, compiled with `fancy-regex` (their
//! look-behind and look-ahead are what `regex` leaves out; the parts without them run on `regex`'s engines).
//! Python's `\d` takes the digits of its own Unicode version, which may differ from the one compiled in here,
//! so a text holding a digit outside 0-9 is handed back undecided for Python to mask.

use fancy_regex::Regex;

/// How a match is hidden (`cityhub_redaction.transform.mask_*`), in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// `mask_middle(found, keep_start, keep_end)`.
    Middle { keep_start: usize, keep_end: usize },
    /// `mask_middle(found.strip(), keep_start, keep_end)`.
    StrippedMiddle { keep_start: usize, keep_end: usize },
    /// `mask_phone(found)`: 3 and 4 kept of 11 characters or more, else the last 4.
    Phone,
}

impl Mask {
    fn apply(self, found: &str, char: char) -> String {
        match self {
            Mask::Middle { keep_start, keep_end } => mask_middle(found, keep_start, keep_end, char),
            Mask::StrippedMiddle { keep_start, keep_end } => mask_middle(found.trim(), keep_start, keep_end, char),
            Mask::Phone => {
                let digits = found.trim();
                match digits.chars().count() >= 11 {
                    true => mask_middle(digits, 3, 4, char),
                    false => mask_middle(digits, 0, 4, char),
                }
            }
        }
    }
}

/// Keep `keep_start` and `keep_end` characters, hide the rest; short values are hidden whole.
pub fn mask_middle(value: &str, keep_start: usize, keep_end: usize, char: char) -> String {
    let count = value.chars().count();
    if count <= keep_start + keep_end {
        return std::iter::repeat_n(char, count).collect();
    }
    let mut masked: String = value.chars().take(keep_start).collect();
    masked.extend(std::iter::repeat_n(char, count - keep_start - keep_end));
    masked.extend(value.chars().skip(count - keep_end));
    masked
}

/// A kind of personal data: its name (in the counts), its pattern and its mask.
pub struct Shape {
    pub name: String,
    pub pattern: String,
    pub mask: Mask,
}

/// Why a text is left to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecided;

pub struct TextMasker {
    run: Regex,
    whole: Vec<Regex>,
    any: Regex,
    masks: Vec<Mask>,
    other_digit: regex::Regex,
    char: char,
}

fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| format!("pattern {pattern:?}: {e}"))
}

impl TextMasker {
    /// `run` finds where a shape can start (a run of digits and dashes); `shapes` in the order they are tried.
    pub fn new(run: &str, shapes: &[Shape], char: char) -> Result<TextMasker, String> {
        let any =
            shapes.iter().enumerate().map(|(i, shape)| format!("(?P<p{i}>{})", shape.pattern)).collect::<Vec<_>>();
        Ok(TextMasker {
            run: compile(run)?,
            whole: shapes
                .iter()
                .map(|shape| compile(&format!(r"\A(?:{})\z", shape.pattern)))
                .collect::<Result<_, _>>()?,
            any: compile(&any.join("|"))?,
            masks: shapes.iter().map(|shape| shape.mask).collect(),
            other_digit: regex::Regex::new(r"[\d&&[^0-9]]").map_err(|e| e.to_string())?,
            char,
        })
    }

    /// `text` masked (None when nothing in it is masked), adding to `counts` (one per shape) what was.
    pub fn mask(&self, text: &str, counts: &mut [u64]) -> Result<Option<String>, Undecided> {
        if self.other_digit.is_match(text) {
            return Err(Undecided);
        }
        let mut found_counts = vec![0u64; self.masks.len()];
        let mut masked = String::new();
        let mut last = 0;
        for run in self.run.find_iter(text) {
            let run = run.map_err(|_| Undecided)?;
            masked.push_str(&text[last..run.start()]);
            masked.push_str(&self.mask_run(run.as_str(), &mut found_counts)?);
            last = run.end();
        }
        if found_counts.iter().all(|&count| count == 0) {
            return Ok(None);
        }
        masked.push_str(&text[last..]);
        counts.iter_mut().zip(found_counts).for_each(|(count, found)| *count += found);
        Ok(Some(masked))
    }

    /// One run: a shape whole, or the shapes found inside it.
    fn mask_run(&self, run: &str, counts: &mut [u64]) -> Result<String, Undecided> {
        for (shape, whole) in self.whole.iter().enumerate() {
            if whole.is_match(run).map_err(|_| Undecided)? {
                counts[shape] += 1;
                return Ok(self.masks[shape].apply(run, self.char));
            }
        }
        let mut masked = String::with_capacity(run.len());
        let mut last = 0;
        for found in self.any.captures_iter(run) {
            let found = found.map_err(|_| Undecided)?;
            let whole = found.get(0).ok_or(Undecided)?;
            let shape = (0..self.masks.len()).find(|i| found.name(&format!("p{i}")).is_some()).ok_or(Undecided)?;
            counts[shape] += 1;
            masked.push_str(&run[last..whole.start()]);
            masked.push_str(&self.masks[shape].apply(whole.as_str(), self.char));
            last = whole.end();
        }
        masked.push_str(&run[last..]);
        Ok(masked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The redaction plugin's built-in patterns.
    fn masker() -> TextMasker {
        let shapes = [
            Shape {
                name: "mobile".into(),
                pattern: r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d{9}(?!\d)".into(),
                mask: Mask::Phone,
            },
            Shape {
                name: "landline".into(),
                pattern: r"(?<!\d)0\d{2,3}-\d{7,8}(?!\d)".into(),
                mask: Mask::Middle { keep_start: 4, keep_end: 2 },
            },
            Shape {
                name: "id_card".into(),
                pattern: r"(?<!\d)\d{17}[\dXx](?!\d)".into(),
                mask: Mask::StrippedMiddle { keep_start: 6, keep_end: 4 },
            },
        ];
        TextMasker::new(r"(?:\+?86[- ]?)?\d[\d-]{6,}[\dXx]?", &shapes, '*').unwrap()
    }

    #[test]
    fn shapes_are_masked_whole_or_inside_a_run() {
        let mut counts = [0; 3];
        let masked =
            masker().mask("来电13812345678，身份证51010419900307123X，座机028-85551234-13912345678", &mut counts);
        assert_eq!(
            masked.unwrap().as_deref(),
            Some("来电138****5678，身份证510104********123X，座机028-******34-139****5678")
        );
        assert_eq!(counts, [2, 1, 1]);
    }

    #[test]
    fn text_without_a_shape_is_unchanged_and_other_digits_are_left_to_python() {
        let mut counts = [0; 3];
        assert_eq!(masker().mask("2026-05-01 订单 123456789012", &mut counts), Ok(None));
        assert_eq!(masker().mask("١٣٨١٢٣٤٥٦٧٨", &mut counts), Err(Undecided));
        assert_eq!(counts, [0, 0, 0]);
    }
}

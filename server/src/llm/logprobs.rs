//! Token log-probabilities of a reply, and the expected value of a number the model wrote.
//!
//! A model that writes `"score": 0.5` may have been nearly as ready to write `0.25` or
//! `0.75`; the written number throws that away. With `logprobs` and `top_logprobs` in the
//! request, a chat completion says, for each token it produced, the probabilities of the
//! most likely alternatives. [`expected_number`] walks the tokens of a number, keeps at each
//! step only the alternatives that can still become one of the allowed values (the
//! probabilities are the model's before any JSON-schema grammar, so a `"` or a letter there
//! is dropped and the rest renormalised), and returns the probability-weighted value.
//!
//! Only the path the model took is known token by token: an alternative that leaves it
//! before the number is complete (say `0` when the model wrote `1`, with `0`, `0.25`, `0.5`
//! and `0.75` all still possible) counts as the mean of the values it can still become.

use serde::{Deserialize, Serialize};

/// One generated token with its log-probability and the top alternatives at its position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// Its UTF-8 bytes, when the provider sends them and they differ from `token` (a token
    /// that splits a multi-byte character).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    /// Natural log of its probability.
    pub logprob: f64,
    /// The most likely tokens at this position (the chosen one usually among them).
    #[serde(default)]
    pub top_logprobs: Vec<TopLogprob>,
}

impl TokenLogprob {
    /// A token chosen with `probability`, with `alternatives` as (token, probability).
    pub fn new(token: &str, probability: f64, alternatives: &[(&str, f64)]) -> Self {
        Self {
            token: token.to_owned(),
            bytes: None,
            logprob: probability.ln(),
            top_logprobs: alternatives
                .iter()
                .map(|(token, p)| TopLogprob {
                    token: (*token).to_owned(),
                    logprob: p.ln(),
                })
                .collect(),
        }
    }

    /// The token's share of the reply text, in bytes.
    fn text_bytes(&self) -> &[u8] {
        self.bytes.as_deref().unwrap_or(self.token.as_bytes())
    }

    /// Length in bytes of the token's share of the reply text.
    fn len(&self) -> usize {
        self.text_bytes().len()
    }
}

/// An alternative token at a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// Natural log of its probability.
    pub logprob: f64,
}

/// Whether `c` can be part of a plain decimal number.
fn numeric(c: char) -> bool {
    c.is_ascii_digit() || c == '.'
}

/// Whether `value` can be written as a number that starts with `prefix` (digits with at most
/// one `.`): `"0.2"` can become 0.25, `"1"` can become 1, 1.5 or 10.
fn can_become(prefix: &str, value: f64) -> bool {
    let written = format!("{value:.6}");
    let written = written.trim_end_matches('0').trim_end_matches('.');
    let (int, frac) = written.split_once('.').unwrap_or((written, ""));
    match prefix.split_once('.') {
        None => int.starts_with(prefix),
        Some((p_int, p_frac)) => {
            p_int == int
                && p_frac
                    .chars()
                    .zip(frac.chars().chain(std::iter::repeat('0')))
                    .all(|(a, b)| a == b)
        }
    }
}

/// The allowed value `text` denotes exactly, if any (`"0.50"` is 0.5).
fn value_of(text: &str, allowed: &[f64]) -> Option<f64> {
    let parsed: f64 = text.parse().ok()?;
    allowed.iter().copied().find(|v| (v - parsed).abs() < 1e-9)
}

/// What the model's probabilities say about a number it wrote.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumberReading {
    /// The probability-weighted mean of the values it weighed.
    pub mean: f64,
    /// Their standard deviation (an alternative that leaves the path early counts at the
    /// mean of what it can become, so this is a lower bound).
    pub sd: f64,
}

/// The probability-weighted value of the number that starts at byte `start` of `content`,
/// over the `allowed` values, from the reply's `tokens`. `None` when the tokens do not spell
/// `content` (they may spell more around it), or the written number is not allowed.
pub fn expected_number(
    content: &str,
    tokens: &[TokenLogprob],
    start: usize,
    allowed: &[f64],
) -> Option<NumberReading> {
    // The tokens may spell more than the reply's content (llama.cpp drops the code fence a
    // model wraps its JSON in), so find the content in their text.
    let joined = String::from_utf8(
        tokens
            .iter()
            .flat_map(|t| t.text_bytes().iter().copied())
            .collect(),
    )
    .ok()?;
    let start = start
        + if joined.starts_with(content) {
            0
        } else {
            joined.find(content)?
        };
    let content = joined.as_str();
    // The token holding the number's first byte, and where each token starts.
    let mut offset = 0;
    let mut first = None;
    for (i, token) in tokens.iter().enumerate() {
        if offset <= start && start < offset + token.len() {
            first = Some((i, offset));
            break;
        }
        offset += token.len();
    }
    let (first, mut offset) = first?;
    let lead = content.get(offset..start)?;

    let mut weight = 1.0;
    // (probability, value) of every way the number could have been completed.
    let mut leaves: Vec<(f64, f64)> = Vec::new();
    for (i, token) in tokens.iter().enumerate().skip(first) {
        let end = offset + token.len();
        if content.as_bytes().get(offset..end) != Some(token.text_bytes()) {
            return None;
        }
        // The number's characters before this token.
        let before = if i == first {
            ""
        } else {
            content.get(start..offset)?
        };
        let mut options = token.top_logprobs.clone();
        if !options.iter().any(|o| o.token == token.token) {
            options.push(TopLogprob {
                token: token.token.clone(),
                logprob: token.logprob,
            });
        }
        // (probability, leaf value or None for the chosen, unfinished path)
        let mut branches: Vec<(f64, Option<f64>, bool)> = Vec::new();
        for option in &options {
            let text = if i == first {
                option
                    .token
                    .strip_prefix(lead)
                    .unwrap_or_else(|| option.token.trim_start())
            } else {
                option.token.as_str()
            };
            let written = format!("{before}{text}");
            let digits: String = written.chars().take_while(|&c| numeric(c)).collect();
            let finished = digits.len() < written.len();
            let chosen = option.token == token.token;
            let value = if finished {
                match value_of(&digits, allowed) {
                    Some(value) => Some(value),
                    None => continue,
                }
            } else {
                let reachable: Vec<f64> = allowed
                    .iter()
                    .copied()
                    .filter(|&v| !digits.is_empty() && can_become(&digits, v))
                    .collect();
                if reachable.is_empty() {
                    continue;
                }
                if chosen {
                    None
                } else {
                    Some(reachable.iter().sum::<f64>() / reachable.len() as f64)
                }
            };
            branches.push((option.logprob.exp(), value, chosen));
        }
        let total: f64 = branches.iter().map(|b| b.0).sum();
        if total <= 0.0 || !branches.iter().any(|b| b.2) {
            return None;
        }
        let mut go_on = None;
        for (p, value, chosen) in branches {
            let share = weight * p / total;
            match value {
                Some(value) => leaves.push((share, value)),
                None if chosen => go_on = Some(share),
                None => {}
            }
        }
        match go_on {
            Some(share) => weight = share,
            None => {
                let mean: f64 = leaves.iter().map(|(p, v)| p * v).sum();
                let variance: f64 = leaves.iter().map(|(p, v)| p * (v - mean).powi(2)).sum();
                return Some(NumberReading {
                    mean,
                    sd: variance.max(0.0).sqrt(),
                });
            }
        }
        offset = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str, p: f64, top: &[(&str, f64)]) -> TokenLogprob {
        TokenLogprob::new(text, p, top)
    }

    const QUARTERS: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

    /// The local model's tokens for `{"score": 0.5, …` (probabilities as it reported them).
    fn written_half() -> (String, Vec<TokenLogprob>) {
        let tokens = vec![
            token("{\"score\":", 1.0, &[]),
            token(" ", 0.98, &[(" ", 0.98), (" \"", 0.013)]),
            token("0", 0.968, &[("0", 0.968), ("1", 0.031), (" ", 0.0004)]),
            token(".", 0.953, &[(".", 0.953), (",", 0.044), (" }", 0.001)]),
            token(
                "5",
                0.342,
                &[
                    ("5", 0.342),
                    ("2", 0.315),
                    ("7", 0.224),
                    ("1", 0.029),
                    ("6", 0.028),
                    ("0", 0.026),
                ],
            ),
            token(",", 0.877, &[(",", 0.877), ("0", 0.066), ("5", 0.008)]),
            token(" \"feedback\": \"ok\"}", 1.0, &[]),
        ];
        let content: String = tokens.iter().map(|t| t.token.as_str()).collect();
        (content, tokens)
    }

    #[test]
    fn the_expected_mark_weighs_the_marks_the_model_hesitated_between() {
        let (content, tokens) = written_half();
        let start = content.find("0.5").expect("the written mark");
        let expected = expected_number(&content, &tokens, start, &QUARTERS)
            .expect("a reading")
            .mean;
        // Renormalised by hand: the first digit 1 (p .031) against 0 (.968); after "0" the
        // number ends (0) with "," .044 and " }" .001 against "." .953; after "0." 2 / 5 / 7 / 0 (1, 6 cannot
        // become a quarter); after "0.5" it ends or goes on as "0.50" (both 0.5), not "0.55".
        let first = 0.031 / (0.031 + 0.968);
        let zero = 0.968 / 0.999 * (0.044 + 0.001) / 0.998;
        let after_point = 0.968 / 0.999 * 0.953 / 0.998;
        let tenths = 0.315 + 0.342 + 0.224 + 0.026;
        let by_hand = first * 1.0
            + zero * 0.0
            + after_point * (0.315 * 0.25 + 0.342 * 0.5 + 0.224 * 0.75) / tenths;
        assert!((expected - by_hand).abs() < 1e-9, "{expected} vs {by_hand}");
        assert!(
            (0.40..0.50).contains(&expected),
            "a 0.5 written with 0.25 and 0.75 nearly as likely: {expected}"
        );
    }

    #[test]
    fn an_alternative_that_leaves_the_path_early_counts_as_its_mean() {
        let tokens = vec![
            token("1", 0.8, &[("1", 0.8), ("0", 0.2)]),
            token("}", 1.0, &[("}", 0.9), (".", 0.1)]),
        ];
        let reading = expected_number("1}", &tokens, 0, &QUARTERS).expect("a reading");
        // "0" can still be 0, ¼, ½ or ¾ (mean 0.375); "1." can only be 1.
        let mean = 0.8 + 0.2 * 0.375;
        assert!((reading.mean - mean).abs() < 1e-9, "{reading:?}");
        let sd = (0.8 * (1.0 - mean).powi(2) + 0.2 * (0.375 - mean).powi(2)).sqrt();
        assert!((reading.sd - sd).abs() < 1e-9, "{reading:?}");
    }

    #[test]
    fn a_code_fence_the_server_dropped_from_the_content_is_skipped() {
        let (content, mut tokens) = written_half();
        tokens.insert(0, token("```json\n", 1.0, &[]));
        tokens.push(token("\n```", 1.0, &[]));
        let start = content.find("0.5").expect("the written mark");
        let fenced = expected_number(&content, &tokens, start, &QUARTERS);
        let (_, plain) = written_half();
        assert_eq!(fenced, expected_number(&content, &plain, start, &QUARTERS));
        assert!(fenced.is_some());
    }

    #[test]
    fn tokens_that_do_not_spell_the_reply_give_nothing() {
        let (content, mut tokens) = written_half();
        tokens[3].token = ",".to_owned();
        let start = content.find("0.5").expect("the written mark");
        assert_eq!(expected_number(&content, &tokens, start, &QUARTERS), None);
        assert_eq!(expected_number(&content, &[], start, &QUARTERS), None);
    }

    #[test]
    fn prefixes_reach_the_values_they_can_still_become() {
        assert!(can_become("0.2", 0.25));
        assert!(can_become("0.50", 0.5));
        assert!(!can_become("0.55", 0.5));
        assert!(can_become("1", 10.0));
        assert!(can_become("1.", 1.0));
        assert!(!can_become("2", 1.5));
    }
}

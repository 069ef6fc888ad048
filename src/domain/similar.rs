//! How alike two texts are, for spotting the same problem reported twice (重复报送).
//!
//! Chinese has no spaces between words, so texts are compared by their character bigrams
//! (pairs of neighbouring letters), ignoring spaces, punctuation and letter case: the
//! similarity is the Jaccard index of the two bigram sets (shared ÷ all), in [0, 1]. A title
//! is compared alone and together with its description; the higher score counts, so a short
//! title that says the same thing is not drowned by a long, differently worded description.

use std::collections::BTreeSet;

/// The bigrams of a text: letters and digits only (CJK included), lower-cased. A text of one
/// letter is its own single "bigram".
pub fn bigrams(text: &str) -> BTreeSet<(char, char)> {
    let letters: Vec<char> = text.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect();
    match letters.len() {
        0 => BTreeSet::new(),
        1 => BTreeSet::from([(letters[0], letters[0])]),
        _ => letters.windows(2).map(|w| (w[0], w[1])).collect(),
    }
}

/// Shared ÷ all; 0 when both are empty.
pub fn jaccard(a: &BTreeSet<(char, char)>, b: &BTreeSet<(char, char)>) -> f64 {
    let shared = a.intersection(b).count();
    let all = a.len() + b.len() - shared;
    if all == 0 {
        0.0
    } else {
        shared as f64 / all as f64
    }
}

/// A text prepared for comparison: its title's bigrams and its whole text's.
#[derive(Clone, Debug)]
pub struct Fingerprint {
    title: BTreeSet<(char, char)>,
    whole: BTreeSet<(char, char)>,
}

impl Fingerprint {
    pub fn of(title: &str, description: &str) -> Self {
        Fingerprint { title: bigrams(title), whole: bigrams(&format!("{title}{description}")) }
    }

    /// How alike two reports are: the higher of title-to-title and whole-to-whole.
    pub fn similarity(&self, other: &Fingerprint) -> f64 {
        let title =
            if self.title.is_empty() || other.title.is_empty() { 0.0 } else { jaccard(&self.title, &other.title) };
        title.max(jaccard(&self.whole, &other.whole))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(a: (&str, &str), b: (&str, &str)) -> f64 {
        Fingerprint::of(a.0, a.1).similarity(&Fingerprint::of(b.0, b.1))
    }

    #[test]
    fn bigrams_ignore_spaces_punctuation_and_case() {
        assert_eq!(bigrams("河道，垃圾"), bigrams("河道 垃圾"));
        assert_eq!(bigrams("LED灯"), bigrams("led 灯"));
        assert_eq!(bigrams("河"), BTreeSet::from([('河', '河')]));
        assert!(bigrams("，。！").is_empty());
    }

    #[test]
    fn identical_texts_score_one_and_unrelated_ones_zero() {
        let a = ("村口河道垃圾堆积", "需住建局协同清理");
        assert_eq!(score(a, a), 1.0);
        assert_eq!(score(a, ("主干道路灯损坏", "夜间通行隐患")), 0.0);
    }

    #[test]
    fn a_shared_title_counts_even_with_different_descriptions() {
        let a = ("村口河道垃圾堆积", "需住建局协同清理，已影响排涝");
        let b = ("村口河道垃圾堆积", "群众反映多次，气味很大，请尽快处理");
        assert_eq!(score(a, b), 1.0);
    }
}

//! How alike two texts are, for spotting the same problem reported twice (重复报送).
//!
//! Chinese has no spaces between words, so texts are compared by their character bigrams
//! (pairs of neighbouring letters), ignoring spaces, punctuation and letter case: the
//! similarity is the Jaccard index of the two bigram sets (shared ÷ all), in [0, 1]. A title
//! is compared alone and together with its description; the higher score counts, so a short
//! title that says the same thing is not drowned by a long, differently worded description.

/// Letters compared at most, from the start of a text: enough to tell two reports apart,
/// and a bound on the work per comparison.
pub const LETTERS_COMPARED_MAX: usize = 400;

/// A set of bigrams, each two chars packed in a u64, sorted and without repeats.
pub type Bigrams = Vec<u64>;

/// The bigrams of a text: letters and digits only (CJK included), lower-cased, from its first
/// [`LETTERS_COMPARED_MAX`] letters. A text of one letter is its own single "bigram".
pub fn bigrams(text: &str) -> Bigrams {
    let letters: Vec<char> =
        text.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).take(LETTERS_COMPARED_MAX).collect();
    let pack = |a: char, b: char| (u64::from(a) << 32) | u64::from(b);
    let mut out: Bigrams = match letters.len() {
        0 => Vec::new(),
        1 => vec![pack(letters[0], letters[0])],
        _ => letters.windows(2).map(|w| pack(w[0], w[1])).collect(),
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// Shared ÷ all; 0 when both are empty.
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut shared) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                shared += 1;
                i += 1;
                j += 1;
            }
        }
    }
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
    title: Bigrams,
    whole: Bigrams,
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
        assert_eq!(bigrams("河"), bigrams("河。"));
        assert_eq!(bigrams("河").len(), 1);
        assert_eq!(bigrams("河河河"), bigrams("河河"), "repeats count once");
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

//! Stop strings over streamed text: text is released as soon as it can no longer become part of
//! a stop string, and generation ends at the first stop string (which is never released).

/// The text of one sequence on its way out: what was generated but not yet released because
/// its end might be the start of a stop string.
#[derive(Debug, Default)]
pub struct StopText {
    stops: Vec<String>,
    held: String,
}

/// What a [`StopText::push`] gives back.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Text safe to release (possibly empty); generation goes on.
    Release(String),
    /// A stop string was found: release this text (up to the stop string) and finish.
    Stop(String),
}

impl StopText {
    /// Empty strings are ignored (they would stop before the first character).
    pub fn new(stops: &[String]) -> StopText {
        StopText {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> Pushed {
        self.held.push_str(text);
        if self.stops.is_empty() {
            return Pushed::Release(std::mem::take(&mut self.held));
        }
        // The earliest stop string wins; a stop string can straddle earlier pushes only through
        // the held tail, which is why searching the whole held text is enough.
        let first = (self.stops.iter())
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first {
            let out = self.held[..at].to_string();
            self.held.clear();
            return Pushed::Stop(out);
        }
        // Hold back the longest tail that is a proper prefix of some stop string.
        let keep = self.held_tail_len();
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        Pushed::Release(out)
    }

    fn held_tail_len(&self) -> usize {
        let h = self.held.as_str();
        let mut best = 0;
        for s in &self.stops {
            let max = s.len().saturating_sub(1).min(h.len());
            for len in (best + 1..=max).rev() {
                let start = h.len() - len;
                if h.is_char_boundary(start) && s.starts_with(&h[start..]) {
                    best = len;
                    break;
                }
            }
        }
        best
    }

    /// The held text, released at the end of a generation that did not stop on a string.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn without_stops_everything_is_released_at_once() {
        let mut t = StopText::new(&[]);
        assert_eq!(t.push("abc"), Pushed::Release("abc".into()));
        assert_eq!(t.finish(), "");
    }

    #[test]
    fn a_stop_string_split_over_pushes_is_found_and_never_released() {
        let mut t = StopText::new(&stops(&["\n\nUser"]));
        assert_eq!(t.push("Hello\n"), Pushed::Release("Hello".into()));
        assert_eq!(t.push("\nUs"), Pushed::Release("".into()));
        assert_eq!(t.push("er: hi"), Pushed::Stop("".into()));
    }

    #[test]
    fn a_false_start_is_released_once_it_diverges() {
        let mut t = StopText::new(&stops(&["END"]));
        assert_eq!(t.push("the EN"), Pushed::Release("the ".into()));
        assert_eq!(t.push("D"), Pushed::Stop("".into()));
        let mut t = StopText::new(&stops(&["END"]));
        assert_eq!(t.push("the EN"), Pushed::Release("the ".into()));
        assert_eq!(t.push("ough"), Pushed::Release("ENough".into()));
        assert_eq!(t.push(" E"), Pushed::Release(" ".into()));
        assert_eq!(t.finish(), "E");
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        let mut t = StopText::new(&stops(&["c", "ab"]));
        assert_eq!(t.push("xxabc"), Pushed::Stop("xx".into()));
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let mut t = StopText::new(&stops(&["é!"]));
        assert_eq!(t.push("caféé"), Pushed::Release("café".into()));
        assert_eq!(t.push("!"), Pushed::Stop("".into()));
    }
}

//! Countries (LOCATION) and nationalities (NRP) from a gazetteer of the
//! world's countries and their demonyms. Cities, states and streets are
//! the entity model's; countries are a closed list, so a list is both
//! cheaper and more reliable for them.
//!
//! Matching ignores case, because lower-cased text is common in chat,
//! except for names that are also ordinary English words ("chad",
//! "jordan", "turkey", "china", "guinea", "polish", "french", ...), which
//! count only capitalised.

use std::collections::HashMap;

use super::{candidate, Recognizer};
use crate::finding::{Candidate, Label, Tier};

const COUNTRIES: &[&str] = &[
    "Afghanistan",
    "Albania",
    "Algeria",
    "Andorra",
    "Angola",
    "Antigua and Barbuda",
    "Argentina",
    "Armenia",
    "Australia",
    "Austria",
    "Azerbaijan",
    "Bahamas",
    "Bahrain",
    "Bangladesh",
    "Barbados",
    "Belarus",
    "Belgium",
    "Belize",
    "Benin",
    "Bhutan",
    "Bolivia",
    "Bosnia and Herzegovina",
    "Botswana",
    "Brazil",
    "Brunei",
    "Bulgaria",
    "Burkina Faso",
    "Burundi",
    "Cambodia",
    "Cameroon",
    "Canada",
    "Cape Verde",
    "Central African Republic",
    "Chad",
    "Chile",
    "China",
    "Colombia",
    "Comoros",
    "Congo",
    "Costa Rica",
    "Croatia",
    "Cuba",
    "Cyprus",
    "Czech Republic",
    "Czechia",
    "Denmark",
    "Djibouti",
    "Dominica",
    "Dominican Republic",
    "East Timor",
    "Ecuador",
    "Egypt",
    "El Salvador",
    "England",
    "Equatorial Guinea",
    "Eritrea",
    "Estonia",
    "Eswatini",
    "Ethiopia",
    "Fiji",
    "Finland",
    "France",
    "Gabon",
    "Gambia",
    "Georgia",
    "Germany",
    "Ghana",
    "Greece",
    "Greenland",
    "Grenada",
    "Guatemala",
    "Guinea",
    "Guinea-Bissau",
    "Guyana",
    "Haiti",
    "Honduras",
    "Hong Kong",
    "Hungary",
    "Iceland",
    "India",
    "Indonesia",
    "Iran",
    "Iraq",
    "Ireland",
    "Israel",
    "Italy",
    "Ivory Coast",
    "Jamaica",
    "Japan",
    "Jordan",
    "Kazakhstan",
    "Kenya",
    "Kiribati",
    "Kosovo",
    "Kuwait",
    "Kyrgyzstan",
    "Laos",
    "Latvia",
    "Lebanon",
    "Lesotho",
    "Liberia",
    "Libya",
    "Liechtenstein",
    "Lithuania",
    "Luxembourg",
    "Macau",
    "Madagascar",
    "Malawi",
    "Malaysia",
    "Maldives",
    "Mali",
    "Malta",
    "Marshall Islands",
    "Mauritania",
    "Mauritius",
    "Mexico",
    "Micronesia",
    "Moldova",
    "Monaco",
    "Mongolia",
    "Montenegro",
    "Morocco",
    "Mozambique",
    "Myanmar",
    "Namibia",
    "Nauru",
    "Nepal",
    "Netherlands",
    "New Zealand",
    "Nicaragua",
    "Niger",
    "Nigeria",
    "North Korea",
    "North Macedonia",
    "Northern Ireland",
    "Norway",
    "Oman",
    "Pakistan",
    "Palau",
    "Palestine",
    "Panama",
    "Papua New Guinea",
    "Paraguay",
    "Peru",
    "Philippines",
    "Poland",
    "Portugal",
    "Puerto Rico",
    "Qatar",
    "Romania",
    "Russia",
    "Rwanda",
    "Saint Lucia",
    "Samoa",
    "San Marino",
    "Saudi Arabia",
    "Scotland",
    "Senegal",
    "Serbia",
    "Seychelles",
    "Sierra Leone",
    "Singapore",
    "Slovakia",
    "Slovenia",
    "Solomon Islands",
    "Somalia",
    "South Africa",
    "South Korea",
    "South Sudan",
    "Spain",
    "Sri Lanka",
    "Sudan",
    "Suriname",
    "Sweden",
    "Switzerland",
    "Syria",
    "Taiwan",
    "Tajikistan",
    "Tanzania",
    "Thailand",
    "Togo",
    "Tonga",
    "Trinidad and Tobago",
    "Tunisia",
    "Turkey",
    "Turkmenistan",
    "Tuvalu",
    "Uganda",
    "Ukraine",
    "United Arab Emirates",
    "United Kingdom",
    "United States",
    "United States of America",
    "Uruguay",
    "Uzbekistan",
    "Vanuatu",
    "Vatican City",
    "Venezuela",
    "Vietnam",
    "Wales",
    "Yemen",
    "Zambia",
    "Zimbabwe",
    "Faroe Islands",
    "Åland Islands",
];

const NATIONALITIES: &[&str] = &[
    "Afghan",
    "Albanian",
    "Algerian",
    "American",
    "Andorran",
    "Angolan",
    "Argentine",
    "Argentinian",
    "Armenian",
    "Australian",
    "Austrian",
    "Azerbaijani",
    "Bahamian",
    "Bahraini",
    "Bangladeshi",
    "Barbadian",
    "Belarusian",
    "Belgian",
    "Belizean",
    "Beninese",
    "Bhutanese",
    "Bolivian",
    "Bosnian",
    "Brazilian",
    "British",
    "Bruneian",
    "Bulgarian",
    "Burmese",
    "Burundian",
    "Cambodian",
    "Cameroonian",
    "Canadian",
    "Chadian",
    "Chilean",
    "Chinese",
    "Colombian",
    "Congolese",
    "Costa Rican",
    "Croatian",
    "Cuban",
    "Cypriot",
    "Czech",
    "Danish",
    "Djiboutian",
    "Dominican",
    "Dutch",
    "Ecuadorian",
    "Egyptian",
    "Emirati",
    "English",
    "Eritrean",
    "Estonian",
    "Ethiopian",
    "Fijian",
    "Filipino",
    "Finnish",
    "French",
    "Gabonese",
    "Gambian",
    "Georgian",
    "German",
    "Ghanaian",
    "Greek",
    "Greenlander",
    "Grenadian",
    "Guatemalan",
    "Guinean",
    "Guyanese",
    "Haitian",
    "Honduran",
    "Hungarian",
    "Icelandic",
    "Indian",
    "Indonesian",
    "Iranian",
    "Iraqi",
    "Irish",
    "Israeli",
    "Italian",
    "Ivorian",
    "Jamaican",
    "Japanese",
    "Jordanian",
    "Kazakh",
    "Kenyan",
    "Korean",
    "Kosovar",
    "Kuwaiti",
    "Kyrgyz",
    "Lao",
    "Latvian",
    "Lebanese",
    "Liberian",
    "Libyan",
    "Lithuanian",
    "Luxembourgish",
    "Malagasy",
    "Malawian",
    "Malaysian",
    "Maldivian",
    "Malian",
    "Maltese",
    "Mauritanian",
    "Mauritian",
    "Mexican",
    "Moldovan",
    "Monegasque",
    "Mongolian",
    "Montenegrin",
    "Moroccan",
    "Mozambican",
    "Namibian",
    "Nepalese",
    "Nepali",
    "New Zealander",
    "Nicaraguan",
    "Nigerian",
    "Nigerien",
    "North Korean",
    "Norwegian",
    "Omani",
    "Pakistani",
    "Palestinian",
    "Panamanian",
    "Paraguayan",
    "Peruvian",
    "Polish",
    "Portuguese",
    "Puerto Rican",
    "Qatari",
    "Romanian",
    "Russian",
    "Rwandan",
    "Salvadoran",
    "Samoan",
    "Saudi",
    "Scottish",
    "Senegalese",
    "Serbian",
    "Sierra Leonean",
    "Singaporean",
    "Slovak",
    "Slovakian",
    "Slovenian",
    "Somali",
    "South African",
    "South Korean",
    "Spanish",
    "Sri Lankan",
    "Sudanese",
    "Surinamese",
    "Swazi",
    "Swedish",
    "Swiss",
    "Syrian",
    "Taiwanese",
    "Tajik",
    "Tanzanian",
    "Thai",
    "Togolese",
    "Tongan",
    "Trinidadian",
    "Tunisian",
    "Turkish",
    "Turkmen",
    "Ugandan",
    "Ukrainian",
    "Uruguayan",
    "Uzbek",
    "Venezuelan",
    "Vietnamese",
    "Welsh",
    "Yemeni",
    "Zambian",
    "Zimbabwean",
    "Chechen",
    "Kurdish",
    "Basque",
    "Catalan",
    "Flemish",
    "Tibetan",
    "Arab",
    "Asian",
    "African",
    "European",
    "Latino",
    "Latina",
    "Hispanic",
    "Caucasian",
    "Jewish",
    "Muslim",
    "Christian",
    "Catholic",
    "Protestant",
    "Hindu",
    "Buddhist",
    "Sikh",
    "Faroese",
    "Mongolians",
    "Americans",
    "Canadians",
    "Brazilians",
    "Italians",
    "Germans",
];

/// Countries that are also given names ("I'm Jordan from finance"): found,
/// but a model that reads a person there wins.
const ALSO_GIVEN_NAMES: &[&str] = &["jordan", "chad", "georgia", "india", "israel"];

/// Names that are also ordinary words: only capitalised.
const NEEDS_CAPITAL: &[&str] = &[
    "chad",
    "jordan",
    "turkey",
    "china",
    "guinea",
    "georgia",
    "niger",
    "mali",
    "togo",
    "oman",
    "peru",
    "cuba",
    "malta",
    "wales",
    "congo",
    "polish",
    "french",
    "swiss",
    "english",
    "greek",
    "dutch",
    "danish",
    "german",
    "lao",
    "thai",
    "christian",
    "arab",
    "asian",
];

const MAX_WORDS: usize = 5;

pub struct Place {
    /// Lower-cased names (words joined by one space) and their labels.
    names: HashMap<String, Label>,
    /// The lower-cased first words of all names: most words of a text
    /// are not one, and this one lookup rules them out.
    first_words: std::collections::HashSet<String>,
}

impl Place {
    pub(crate) fn new() -> Self {
        let mut names = HashMap::new();
        for (list, label) in [(COUNTRIES, Label::Location), (NATIONALITIES, Label::Nrp)] {
            for name in list {
                names.insert(name.to_lowercase(), label);
            }
        }
        let first_words = names
            .keys()
            .filter_map(|n| n.split([' ', '-']).next().map(str::to_string))
            .collect();
        Place { names, first_words }
    }
}

/// The words of `text` with their byte ranges.
fn words(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let part = c.is_alphabetic() || (c == '-' && start.is_some());
        match (part, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

impl Recognizer for Place {
    fn name(&self) -> &'static str {
        "place"
    }

    fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        let words = words(text);
        let mut i = 0;
        let mut lower = String::new();
        while i < words.len() {
            lower.clear();
            let first = &text[words[i].0..words[i].1];
            lower.extend(
                first
                    .split('-')
                    .next()
                    .unwrap_or(first)
                    .chars()
                    .flat_map(char::to_lowercase),
            );
            if !self.first_words.contains(&lower) {
                i += 1;
                continue;
            }
            // Longest name first: "Papua New Guinea" before "Guinea".
            let longest = (1..=MAX_WORDS.min(words.len() - i)).rev().find_map(|n| {
                let (start, end) = (words[i].0, words[i + n - 1].1);
                let span = &text[start..end];
                // The words of one name are separated by single spaces.
                if (1..n).any(|k| words[i + k].0 != words[i + k - 1].1 + 1) {
                    return None;
                }
                let key = span.to_lowercase();
                let label = *self.names.get(&key)?;
                let capital = span.chars().next().is_some_and(char::is_uppercase);
                if NEEDS_CAPITAL.contains(&key.as_str()) && !capital {
                    return None;
                }
                let tier = if ALSO_GIVEN_NAMES.contains(&key.as_str()) {
                    Tier::Weak
                } else {
                    Tier::Pattern
                };
                Some((n, start, end, label, tier))
            });
            match longest {
                Some((n, start, end, label, tier)) => {
                    let pattern = if label == Label::Nrp {
                        "nationality"
                    } else {
                        "country"
                    };
                    out.push(candidate(
                        self.name(),
                        start..end,
                        label,
                        0.6,
                        tier,
                        pattern,
                        None,
                    ));
                    i += n;
                }
                None => i += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::found;
    use super::*;

    #[test]
    fn countries_and_nationalities() {
        let r = Place::new();
        assert_eq!(
            found(&r, "She moved from papua new guinea to the Czech Republic."),
            ["papua new guinea", "Czech Republic"]
        );
        assert_eq!(
            found(&r, "The Scottish Border Force detained a brazilian"),
            ["Scottish", "brazilian"]
        );
        assert_eq!(found(&r, "Uruguay 10666"), ["Uruguay"]);
    }

    #[test]
    fn countries_that_are_given_names_are_weak_evidence() {
        let r = Place::new();
        let mut out = Vec::new();
        r.find("I'm Jordan, visiting France", &mut out);
        let tiers: Vec<Tier> = out.iter().map(|c| c.reason.tier).collect();
        assert_eq!(tiers, [Tier::Weak, Tier::Pattern]);
    }

    #[test]
    fn ordinary_words_need_a_capital() {
        let r = Place::new();
        assert!(found(&r, "we ate turkey on china plates and spoke french").is_empty());
        assert_eq!(found(&r, "flights to Jordan and Chad"), ["Jordan", "Chad"]);
        assert!(found(&r, "Germanic languages, Indiana, Francesca").is_empty());
    }
}

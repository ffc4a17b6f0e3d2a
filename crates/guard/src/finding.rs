//! What a scan reports: labelled spans in Unicode code points, each with
//! the recognizer that found it, its score and the reason.

use serde::Serialize;

/// The kinds of sensitive data the guard knows, named as Presidio names
/// them so existing tooling reads our output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "&'static str")]
pub enum Label {
    Person,
    Location,
    Address,
    Organization,
    Nrp,
    Age,
    EmailAddress,
    PhoneNumber,
    CreditCard,
    UsSsn,
    IbanCode,
    IpAddress,
    Url,
    DateTime,
    UsDriverLicense,
    Secret,
}

impl Label {
    /// Every label.
    pub const ALL: [Label; 16] = [
        Label::Person,
        Label::Location,
        Label::Address,
        Label::Organization,
        Label::Nrp,
        Label::Age,
        Label::EmailAddress,
        Label::PhoneNumber,
        Label::CreditCard,
        Label::UsSsn,
        Label::IbanCode,
        Label::IpAddress,
        Label::Url,
        Label::DateTime,
        Label::UsDriverLicense,
        Label::Secret,
    ];

    /// The label named as [`Label::as_str`] names it.
    pub fn parse(name: &str) -> Option<Label> {
        Label::ALL.into_iter().find(|l| l.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Label::Person => "PERSON",
            Label::Location => "LOCATION",
            Label::Address => "ADDRESS",
            Label::Organization => "ORGANIZATION",
            Label::Nrp => "NRP",
            Label::Age => "AGE",
            Label::EmailAddress => "EMAIL_ADDRESS",
            Label::PhoneNumber => "PHONE_NUMBER",
            Label::CreditCard => "CREDIT_CARD",
            Label::UsSsn => "US_SSN",
            Label::IbanCode => "IBAN_CODE",
            Label::IpAddress => "IP_ADDRESS",
            Label::Url => "URL",
            Label::DateTime => "DATE_TIME",
            Label::UsDriverLicense => "US_DRIVER_LICENSE",
            Label::Secret => "SECRET",
        }
    }

    /// The placeholder `PII_REMOVAL` writes, as the product documents it.
    pub fn placeholder(self) -> &'static str {
        match self {
            Label::Person => "[PERSON]",
            Label::Location => "[LOCATION]",
            Label::Address => "[ADDRESS]",
            Label::Organization => "[ORGANIZATION]",
            Label::Nrp => "[NRP]",
            Label::Age => "[AGE]",
            Label::EmailAddress => "[EMAIL]",
            Label::PhoneNumber => "[PHONE]",
            Label::CreditCard => "[PAYMENT_CARD]",
            Label::UsSsn => "[SSN]",
            Label::IbanCode => "[IBAN]",
            Label::IpAddress => "[IP_ADDRESS]",
            Label::Url => "[URL]",
            Label::DateTime => "[DATE_TIME]",
            Label::UsDriverLicense => "[DRIVER_LICENSE]",
            Label::Secret => "[SECRET]",
        }
    }
}

#[cfg(test)]
#[test]
fn every_label_parses_back() {
    for l in Label::ALL {
        assert_eq!(Label::parse(l.as_str()), Some(l));
    }
    assert_eq!(Label::parse("person"), None);
}

impl From<Label> for &'static str {
    fn from(l: Label) -> &'static str {
        l.as_str()
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sure a finding is, by the kind of evidence behind it. When spans
/// overlap, a higher tier wins regardless of score: a checksum-validated
/// card number beats a model's guess that the same digits are a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// A pattern whose words have another common reading (a country that
    /// is also a given name): a model's reading of the same span wins.
    Weak,
    /// A learned model's guess.
    Model,
    /// A pattern with no checksum or structural validation.
    Pattern,
    /// A pattern confirmed by a validator (Luhn, mod-97, range rules, a
    /// parser).
    Validated,
}

/// Why a span was reported: the evidence, for `explain`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reason {
    pub tier: Tier,
    /// The pattern or model that proposed the span.
    pub pattern: &'static str,
    /// The validator that confirmed it, if any.
    pub validator: Option<&'static str>,
    /// Context words near the span that raised (or lowered) its score.
    pub context: Vec<String>,
    /// The score before context adjusted it.
    pub base_score: f64,
}

/// A span of sensitive text, in byte offsets while the scan works.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub start: usize,
    pub end: usize,
    pub label: Label,
    pub score: f64,
    pub recognizer: &'static str,
    pub reason: Reason,
}

/// A finding as reported: offsets in Unicode code points, end exclusive.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub start: usize,
    pub end: usize,
    pub label: Label,
    pub score: f64,
    pub recognizer: &'static str,
    /// The byte range of the same span in the UTF-8 text.
    #[serde(skip)]
    pub bytes: std::ops::Range<usize>,
    #[serde(skip)]
    pub reason: Reason,
}

/// Converts byte offsets (always on character boundaries) to code-point
/// offsets. ASCII text, the common case, maps one to one.
pub(crate) struct CodePoints<'a> {
    text: &'a str,
    ascii: bool,
}

impl<'a> CodePoints<'a> {
    pub fn new(text: &'a str) -> Self {
        CodePoints {
            text,
            ascii: text.is_ascii(),
        }
    }

    /// Code-point offsets of byte offsets, which must be sorted.
    pub fn convert_sorted(&self, bytes: &[usize]) -> Vec<usize> {
        if self.ascii {
            return bytes.to_vec();
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut chars = 0;
        let mut at = 0;
        for &b in bytes {
            chars += self.text[at..b].chars().count();
            at = b;
            out.push(chars);
        }
        out
    }
}

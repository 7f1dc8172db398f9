//! Conditions on when and from where an eligible role may be activated:
//! `activation_hours = "Mon-Fri 08:00-18:00"` in the role's `timezone`, and
//! `activation_networks = ["10.0.0.0/8"]`. Parsed once when the config is checked; every
//! problem is a sentence naming what is wrong.

use std::net::IpAddr;
use std::time::SystemTime;

use jiff::tz::TimeZone;

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A weekly window: on these days, between these times of day, in a time zone. A window whose
/// end is before its start runs past midnight into the next day (`22:00-06:00`).
#[derive(Debug, Clone, PartialEq)]
pub struct Hours {
    /// Monday first.
    days: [bool; 7],
    /// Minutes after midnight.
    from: u16,
    to: u16,
    zone: TimeZone,
    /// As written, with the zone, for messages.
    text: String,
}

impl Hours {
    /// Parses `DAYS HH:MM-HH:MM` (DAYS: `Mon-Fri`, `Sat,Sun`, `Mon-Wed,Fri`, or `daily`) in
    /// `timezone` (an IANA name such as `Europe/Berlin`; UTC when absent).
    pub fn parse(spec: &str, timezone: Option<&str>) -> Result<Self, String> {
        let zone_name = timezone.unwrap_or("UTC");
        let zone = TimeZone::get(zone_name).map_err(|_| {
            format!("unknown time zone {zone_name:?} (an IANA name such as \"Europe/Berlin\", or \"UTC\")")
        })?;
        let shape = || {
            format!(
                "{spec:?} is not a weekly window; write days and times like \"Mon-Fri 08:00-18:00\""
            )
        };
        let (days_text, times) = spec.trim().split_once(' ').ok_or_else(shape)?;
        let days = parse_days(days_text.trim()).ok_or_else(shape)?;
        let (from, to) = times.trim().split_once('-').ok_or_else(shape)?;
        let (from, to) = (
            parse_time(from).ok_or_else(shape)?,
            parse_time(to).ok_or_else(shape)?,
        );
        if from == to {
            return Err(format!(
                "{spec:?} is an empty window (it starts when it ends)"
            ));
        }
        Ok(Self {
            days,
            from,
            to,
            zone,
            text: format!("{} ({zone_name})", spec.trim()),
        })
    }

    /// Whether `at` falls in the window.
    pub fn contains(&self, at: SystemTime) -> bool {
        let (day, minute) = self.local(at);
        if self.from < self.to {
            self.days[day] && (self.from..self.to).contains(&minute)
        } else {
            // Past midnight: the evening part on a listed day, the morning part the day after.
            (self.days[day] && minute >= self.from)
                || (self.days[(day + 6) % 7] && minute < self.to)
        }
    }

    /// `Sat 10:15` at `at`, in the window's zone.
    pub fn local_time(&self, at: SystemTime) -> String {
        let (day, minute) = self.local(at);
        format!("{} {:02}:{:02}", DAYS[day], minute / 60, minute % 60)
    }

    /// The window as written, with its zone.
    pub fn describe(&self) -> &str {
        &self.text
    }

    fn local(&self, at: SystemTime) -> (usize, u16) {
        let zoned = jiff::Timestamp::try_from(at)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_zoned(self.zone.clone());
        let day = usize::from(zoned.weekday().to_monday_zero_offset().unsigned_abs());
        let minute =
            u16::from(zoned.hour().unsigned_abs()) * 60 + u16::from(zoned.minute().unsigned_abs());
        (day % 7, minute)
    }
}

fn parse_days(text: &str) -> Option<[bool; 7]> {
    let mut days = [false; 7];
    if text.eq_ignore_ascii_case("daily") {
        return Some([true; 7]);
    }
    let index = |name: &str| {
        DAYS.iter()
            .position(|d| d.eq_ignore_ascii_case(name.trim()))
    };
    for part in text.split(',') {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (index(first)?, index(last)?);
                let mut day = first;
                loop {
                    days[day] = true;
                    if day == last {
                        break;
                    }
                    day = (day + 1) % 7;
                }
            }
            None => days[index(part)?] = true,
        }
    }
    Some(days)
}

fn parse_time(text: &str) -> Option<u16> {
    let (hours, minutes) = text.trim().split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let (hours, minutes): (u16, u16) = (hours.parse().ok()?, minutes.parse().ok()?);
    // 24:00 is the end of the day.
    if minutes > 59 || hours > 24 || (hours == 24 && minutes != 0) {
        return None;
    }
    Some(hours * 60 + minutes)
}

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    bits: u8,
}

impl Network {
    /// Parses `ADDRESS[/BITS]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || format!("{text:?} is not an address block (like \"10.0.0.0/8\" or \"::1\")");
        let (address, bits) = match text.split_once('/') {
            Some((address, bits)) => (address, Some(bits.parse::<u8>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| bad())?;
        let most = if address.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(most);
        if bits > most {
            return Err(bad());
        }
        Ok(Self { address, bits })
    }

    /// Whether `ip` is in the block (an IPv4 address written as IPv6, `::ffff:10.1.2.3`,
    /// counts as the IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.bits)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2026-12-07 was a Monday; `at(day, "HH:MM")` is that week's day at a UTC time.
    fn at(day: u64, time: &str) -> SystemTime {
        let monday = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_601_600);
        let minutes = u64::from(parse_time(time).unwrap());
        monday + Duration::from_secs(day * 86_400 + minutes * 60)
    }

    #[test]
    fn office_hours_in_utc() {
        let hours = Hours::parse("Mon-Fri 08:00-18:00", None).unwrap();
        assert_eq!(hours.local_time(at(0, "00:00")), "Mon 00:00");
        assert!(hours.contains(at(0, "08:00")));
        assert!(hours.contains(at(4, "17:59")));
        assert!(
            !hours.contains(at(4, "18:00")),
            "the end is not in the window"
        );
        assert!(!hours.contains(at(0, "07:59")));
        assert!(!hours.contains(at(5, "12:00")), "Saturday");
        assert_eq!(hours.local_time(at(5, "12:00")), "Sat 12:00");
        assert_eq!(hours.describe(), "Mon-Fri 08:00-18:00 (UTC)");
    }

    #[test]
    fn hours_follow_the_zone_and_its_daylight_saving() {
        let berlin = Hours::parse("Mon-Fri 08:00-18:00", Some("Europe/Berlin")).unwrap();
        // December: Berlin is UTC+1, so 07:30 UTC is 08:30 there.
        assert!(berlin.contains(at(0, "07:30")));
        assert!(!berlin.contains(at(0, "17:30")), "18:30 in Berlin");
        assert_eq!(berlin.local_time(at(0, "07:30")), "Mon 08:30");
        // July: UTC+2, so 06:30 UTC is already 08:30 there.
        let july = SystemTime::UNIX_EPOCH + Duration::from_secs(1_783_319_400); // Mon 2026-07-06 06:30 UTC
        assert_eq!(berlin.local_time(july), "Mon 08:30");
        assert!(berlin.contains(july));
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_starts() {
        let night = Hours::parse("Fri 22:00-06:00", None).unwrap();
        assert!(night.contains(at(4, "23:00")));
        assert!(
            night.contains(at(5, "05:59")),
            "Saturday morning is Friday night"
        );
        assert!(!night.contains(at(5, "06:00")));
        assert!(
            !night.contains(at(5, "23:00")),
            "Saturday night is not listed"
        );
        assert!(
            !night.contains(at(4, "05:00")),
            "Friday morning is Thursday night"
        );
        let weekend = Hours::parse("Sat,Sun 00:00-24:00", None).unwrap();
        assert!(weekend.contains(at(6, "23:59")));
        assert!(!weekend.contains(at(0, "00:00")));
        let wrap = Hours::parse("Sat-Mon 10:00-11:00", None).unwrap();
        assert!(wrap.contains(at(0, "10:30")) && wrap.contains(at(6, "10:30")));
        assert!(!wrap.contains(at(1, "10:30")));
        assert!(
            Hours::parse("daily 09:00-10:00", None)
                .unwrap()
                .contains(at(3, "09:00"))
        );
    }

    #[test]
    fn bad_windows_and_zones_are_sentences() {
        for (spec, zone, says) in [
            ("Mon-Fri", None, "not a weekly window"),
            ("Mon-Fry 08:00-18:00", None, "not a weekly window"),
            ("Mon-Fri 8:00-18:00", None, "not a weekly window"),
            ("Mon-Fri 08:00-25:00", None, "not a weekly window"),
            ("Mon-Fri 08:00-08:00", None, "empty window"),
            (
                "Mon-Fri 08:00-18:00",
                Some("Mars/Olympus"),
                "unknown time zone \"Mars/Olympus\"",
            ),
        ] {
            let error = Hours::parse(spec, zone).unwrap_err();
            assert!(error.contains(says), "{spec}: {error}");
        }
    }

    #[test]
    fn address_blocks() {
        let net = Network::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let one = Network::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            Network::parse("::1/128")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert_eq!(
            Network::parse("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        for bad in [
            "10.0.0.0/33",
            "garbage",
            "10.0.0/8",
            "::1/129",
            "10.0.0.0/x",
        ] {
            assert!(
                Network::parse(bad)
                    .unwrap_err()
                    .contains("is not an address block"),
                "{bad}"
            );
        }
    }
}

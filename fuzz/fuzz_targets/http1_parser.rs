//! Fuzzes the HTTP/1.x parser with arbitrary streams cut into arbitrary
//! syscalls with arbitrary gaps.
//!
//! Input layout:
//! * byte 0: settings. Bits 0-1: the body hint the sink gives final
//!   responses (Normal, NoBody, Tunnel, or cycling through them); bit 2:
//!   small limits (heads cut early, few fields kept).
//! * then syscalls, each `[len, gap, len bytes of data]`: `len` is the data
//!   length (cut short at the end of the input); `gap` encodes the
//!   uncaptured count (high bit clear: none; 0xff: 2^40; else (gap & 0x7f)^2).
//!
//! The same syscalls are fed to a request parser and a response parser. The
//! checks: no panic, `buffered() <= max_head_bytes` after every feed, events
//! that follow the sink contract, and an idle parser after `close()`. Then,
//! without the gaps, the events of the split stream must equal those of the
//! same bytes fed at once, up to the first desync (after it, a syscall start
//! may offer a resynchronization point that the whole feed lacks).
#![no_main]

use agent::protocol::http1::parser::{
    BodyHint, DesyncReason, Head, Limits, MessageKind, Parser, Sink,
};
use libfuzzer_sys::fuzz_target;

/// One event, for comparing runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Begin,
    Head(Box<Head>),
    End(u64),
    Desync(DesyncReason),
    Upgraded(Option<String>),
}

/// Checks the order of events: begin, head, then end or upgraded per
/// message; desync at any time; nothing after upgraded. Records them.
struct Checker {
    events: Vec<Event>,
    hint: u8,
    finals: usize,
    in_message: bool,
    head_seen: bool,
    stopped: bool,
}

impl Checker {
    fn new(hint: u8) -> Self {
        Self {
            events: Vec::new(),
            hint,
            finals: 0,
            in_message: false,
            head_seen: false,
            stopped: false,
        }
    }
}

impl Sink for Checker {
    fn begin(&mut self) {
        assert!(!self.stopped && !self.in_message);
        self.in_message = true;
        self.head_seen = false;
        self.events.push(Event::Begin);
    }

    fn head(&mut self, head: Box<Head>) -> BodyHint {
        assert!(!self.stopped && self.in_message && !self.head_seen);
        assert!(head.version_minor <= 1);
        self.head_seen = true;
        self.finals += 1;
        self.events.push(Event::Head(head));
        let choice = if self.hint == 3 {
            (self.finals % 3) as u8
        } else {
            self.hint
        };
        match choice {
            1 => BodyHint::NoBody,
            2 => BodyHint::Tunnel,
            _ => BodyHint::Normal,
        }
    }

    fn end(&mut self, body_bytes: u64) {
        assert!(!self.stopped && self.in_message && self.head_seen);
        self.in_message = false;
        self.events.push(Event::End(body_bytes));
    }

    fn desync(&mut self, reason: DesyncReason) {
        assert!(!self.stopped);
        assert!(!reason.as_str().is_empty());
        self.in_message = false;
        self.events.push(Event::Desync(reason));
    }

    fn upgraded(&mut self, upgrade: Option<&str>) {
        assert!(!self.stopped && self.in_message && self.head_seen);
        self.in_message = false;
        self.stopped = true;
        self.events
            .push(Event::Upgraded(upgrade.map(str::to_owned)));
    }
}

/// Splits the input into `(data, gap)` syscalls.
fn syscalls(mut input: &[u8]) -> Vec<(&[u8], u64)> {
    let mut out = Vec::new();
    while let [len, gap, rest @ ..] = input {
        let len = usize::from(*len).min(rest.len());
        let gap = match *gap {
            g if g & 0x80 == 0 => 0,
            0xff => 1 << 40,
            g => u64::from(g & 0x7f).pow(2),
        };
        out.push((&rest[..len], gap));
        input = &rest[len..];
    }
    out
}

fn run(kind: MessageKind, limits: Limits, hint: u8, calls: &[(&[u8], u64)]) -> Vec<Event> {
    let mut parser = Parser::new(kind, limits);
    let mut sink = Checker::new(hint);
    for &(data, gap) in calls {
        parser.feed(data, gap, &mut sink);
        assert!(parser.buffered() <= parser.limits().max_head_bytes);
    }
    parser.close(&mut sink);
    assert!(parser.is_idle());
    assert_eq!(parser.buffered(), 0);
    sink.events
}

/// The events up to and including the first desync.
fn until_desync(events: &[Event]) -> &[Event] {
    let end = events
        .iter()
        .position(|e| matches!(e, Event::Desync(_)))
        .map_or(events.len(), |i| i + 1);
    &events[..end]
}

fuzz_target!(|input: &[u8]| {
    let Some((&settings, rest)) = input.split_first() else {
        return;
    };
    let limits = if settings & 4 != 0 {
        Limits {
            max_head_bytes: 96,
            max_headers: 4,
            max_target_len: 16,
        }
    } else {
        Limits::default()
    };
    let hint = settings & 3;
    let calls = syscalls(rest);
    let gapless: Vec<_> = calls.iter().map(|&(data, _)| (data, 0)).collect();
    let stream = calls
        .iter()
        .flat_map(|&(data, _)| data)
        .copied()
        .collect::<Vec<u8>>();
    for kind in [MessageKind::Request, MessageKind::Response] {
        run(kind, limits, hint, &calls);
        let whole = run(kind, limits, hint, &[(&stream, 0)]);
        let split = run(kind, limits, hint, &gapless);
        let expected = until_desync(&whole);
        assert_eq!(split.get(..expected.len()), Some(expected), "split differs");
    }
});

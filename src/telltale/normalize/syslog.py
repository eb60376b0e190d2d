"""Syslog lines: RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG`) and RFC 3164 /
BSD files (`[<PRI>]Mmm dd hh:mm:ss HOST TAG[PID]: MSG`, as /var/log/messages writes them).

The priority's severity becomes the OTel severity (emerg 23 … debug 5), the app/tag the
ServiceName, the host `host.name`; PROCID, MSGID, facility and structured-data parameters
become LogAttributes. Year-less RFC 3164 times take the `year` option (default: this year).
A line that is neither form is quarantined as UNPARSABLE.
"""

from __future__ import annotations

import re

from telltale.model import QuarantineReason, Signal
from telltale.normalize.log_records import Record, context, lines, to_table
from telltale.normalize.log_times import SYSLOG_NAMES, SYSLOG_SEVERITY, TimeContext, parse_time
from telltale.normalize.options import DecodeOptions
from telltale.normalize.staging import Decoded, Reject

_RFC5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<proc>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>.*))?$", re.S)
_MON = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_RFC3164 = re.compile(
    rf"(?:<(?P<pri>\d{{1,3}})>)?(?P<ts>{_MON} [ \d]\d \d{{2}}:\d{{2}}:\d{{2}}) (?P<host>\S+) "
    r"(?:(?P<tag>[^\s\[:]+)(?:\[(?P<pid>[^\]]*)\])?: ?)?(?P<msg>.*)$", re.S)
_SD_ELEMENT = re.compile(r"\[(?P<id>[^\s\]]+)(?P<params>(?: [^=\s]+=\"(?:[^\"\\]|\\.)*\")*)\]")
_SD_PARAM = re.compile(r"([^=\s]+)=\"((?:[^\"\\]|\\.)*)\"")
_FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
               "authpriv", "ftp", "ntp", "audit", "alert", "clock", *(f"local{i}" for i in range(8)))


def looks_like(line: str) -> bool:
    """Is this (first) line syslog? Used to route `--format log` input here."""
    return bool(_RFC5424.match(line) or (_RFC3164.match(line) and
                                        re.match(rf"(?:<\d{{1,3}}>)?{_MON} [ \d]\d \d\d:\d\d:\d\d \S+ "
                                                 r"[^\s\[:]+(?:\[[^\]]*\])?:", line)))


def _priority(record: Record, pri: str | None) -> None:
    if pri is None or int(pri) > 191:
        return
    value = int(pri)
    record.severity_number = SYSLOG_SEVERITY[value % 8]
    record.severity_text = SYSLOG_NAMES[value % 8]
    record.attributes["syslog.facility"] = _FACILITIES[value // 8]


def parse_line(text: str, pos: str, ctx: TimeContext) -> Record | None:
    """One syslog line → a Record (None when it is neither RFC 5424 nor RFC 3164)."""
    found = _RFC5424.match(text)
    record = Record(pos, len(text) + 1, "")
    if found:
        g = found.groupdict()
        record.time_ns = 0 if g["ts"] == "-" else parse_time(g["ts"], ctx) or 0
        record.body = (g["msg"] or "").removeprefix("\ufeff")
        for key, name in (("proc", "syslog.procid"), ("msgid", "syslog.msgid")):
            if g[key] != "-":
                record.attributes[name] = g[key]
        for element in _SD_ELEMENT.finditer(g["sd"] if g["sd"] != "-" else ""):
            for param, value in _SD_PARAM.findall(element.group("params")):
                record.attributes[f"{element.group('id')}.{param}"] = value
        app = g["app"]
    else:
        found = _RFC3164.match(text)
        if not found:
            return None
        g = found.groupdict()
        record.time_ns = parse_time(g["ts"], ctx) or 0
        record.body = g["msg"]
        if g["pid"]:
            record.attributes["syslog.procid"] = g["pid"]
        app = g["tag"] or "-"
    _priority(record, g["pri"])
    if g["host"] != "-":
        record.resource["host.name"] = g["host"]
    record.service = "" if app == "-" else app
    return record


def decode(data: bytes, options: DecodeOptions) -> Decoded:
    ctx = context(options)
    out = Decoded()
    records: list[Record] = []
    for number, text in lines(data, options, out.rejects):
        record = parse_line(text, f"line {number}", ctx)
        if record is None:
            out.rejects.append(Reject(Signal.LOGS, f"line {number}", QuarantineReason.UNPARSABLE,
                                      text[:1 << 16], "not RFC 5424 or RFC 3164 syslog"))
        else:
            records.append(record)
    if records:
        out.logs.append(to_table(records, "telltale/syslog"))
    return out

"""The subject lines automatic mail uses, in the languages partners write in. Data for workflows.automatic.

Only *shapes* a responder produces are listed: a fixed prefix followed by a colon
("Automatic reply: <the original subject>"), or a subject that is nothing but the
notice ("Out of Office", "Undelivered Mail Returned to Sender"). A person writing
"Out of office last week, now the site is down" or "Re: Automatic reply: …" does
not match. Sources: what Outlook/Exchange, Gmail, Lotus Notes, Zimbra, Postfix,
Exim, Sendmail and qmail put there in each language, and the lists Discourse and
multi_mail keep for the same purpose.
"""

from __future__ import annotations

import re

# Prefixes an auto-responder puts before the original subject, always followed by ":".
_AUTO_REPLY_PREFIXES = [
    # English
    r"automatic reply", r"auto(?:matic)?[ -]?reply", r"auto(?:matic)?[ -]?response", r"autoresponse",
    r"auto", r"out of (?:the )?office(?: auto ?reply| reply| notice| alert)?", r"away from (?:the )?office",
    r"vacation(?: reply| response| notice)?", r"holiday(?: reply| notice)?", r"absence notice",
    # German
    r"automatische antwort", r"autom\. antwort", r"abwesenheitsnotiz", r"automatische abwesenheitsnotiz",
    r"abwesenheit", r"abwesend", r"nicht im b[üu]ro", r"au(?:ß|ss)er haus", r"urlaubsabwesenheit",
    # French
    r"r[ée]ponse automatique", r"absent(?:e)? du bureau", r"absence du bureau", r"message d'absence",
    r"r[ée]ponse en cas d'absence", r"absence",
    # Spanish
    r"respuesta autom[áa]tica", r"fuera de (?:la )?oficina", r"respuesta de ausencia", r"ausente",
    r"ausencia",
    # Italian
    r"risposta automatica", r"fuori sede", r"fuori ufficio", r"risposta di assenza", r"assenza",
    r"risposta non al computer",
    # Portuguese
    r"resposta autom[áa]tica", r"aus[êe]ncia tempor[áa]ria", r"fora do escrit[óo]rio", r"resposta de aus[êe]ncia",
    r"aus[êe]ncia",
    # Dutch
    r"automatisch antwoord", r"automatisch beantwoord", r"afwezig", r"niet aanwezig", r"buiten kantoor",
    r"afwezigheidsmelding", r"afwezigheidsbericht",
    # Scandinavian, as Discourse lists them
    r"autosvar", r"automatisk svar", r"fr[åa]nvaro",
]
# Tags some ticket systems and gateways put first, with or without a colon.
_AUTO_REPLY_TAGS = [r"\[auto[ -]?generated\]", r"\[auto[ -]?reply\]", r"\[auto[ -]?response\]", r"\[autoreply\]",
                    r"\*\*\*\s*auto[ -]?reply\s*\*\*\*"]
# Subjects that are the whole notice (maybe with a name or a date after a dash or in brackets).
_AUTO_REPLY_WHOLE = [r"out of (?:the )?office", r"auto[ -]?response", r"automatic reply", r"on vacation",
                     r"on holiday", r"abwesenheitsnotiz", r"absence", r"afwezig", r"fuori sede", r"ausente"]
# Lotus Notes: "Antonio De Marco is out of the office." (and its German/French forms).
_AUTO_REPLY_TAIL = [r"is out of (?:the )?office\.?", r"ist au(?:ß|ss)er haus\.?", r"est absent(?:e)?\.?"]

_BOUNCE_PREFIXES = [
    # English
    r"undeliverable", r"undelivered mail", r"undelivered", r"returned mail", r"mail delivery failed",
    r"delivery failure", r"delivery failed", r"delivery status notification", r"delivery notification",
    r"message not delivered", r"nondeliverable mail", r"non-?delivery report", r"failure notice",
    r"mail system error", r"delivery problem", r"delayed mail", r"message delayed",
    # German
    r"unzustellbar", r"nicht zustellbar", r"unzustellbare nachricht", r"zustellung fehlgeschlagen",
    r"zustellungsbericht", r"verz[öo]gerte zustellung",
    # French
    r"non remis", r"non distribuable", r"[ée]chec de (?:la )?remise", r"message non remis",
    r"remise diff[ée]r[ée]e",
    # Spanish
    r"no se puede entregar", r"imposible entregar", r"no entregado", r"error de entrega",
    r"entrega retrasada",
    # Italian
    r"non recapitabile", r"mancato recapito", r"impossibile recapitare", r"recapito ritardato",
    # Portuguese
    r"n[ãa]o [ée] poss[íi]vel entregar", r"n[ãa]o entregue", r"falha na entrega", r"entrega atrasada",
    # Dutch
    r"onbestelbaar", r"kan niet worden bezorgd", r"niet bezorgd", r"vertraagde bezorging",
]
_BOUNCE_WHOLE = [
    r"undelivered mail returned to sender", r"failure notice", r"delivery status notification(?: \(\w+\))?",
    r"returned mail", r"delivery failure", r"mail delivery failed", r"nondeliverable mail",
    r"delayed mail \(still being retried\)", r"message delivery notification",
    r"warning: message \S+ delayed .*", r"warning: could not send message .*", r"mail delivery (?:sub)?system",
]
# Virus and content scanners telling the sender a message was stopped.
_SCANNER = re.compile(
    r"^\s*(?:\[(?:virus|malware)[^\]]*\]|(?:virus|malware)[^:]{0,40}[:!-]|virus \([^)]*\) in mail|(?:virus|malware) (?:alert|detected|found|warning|notification)|"
    r"banned (?:contents|attachment)|message (?:blocked|quarantined)|quarantine(?:d)? (?:notice|notification)|"
    r"infected (?:message|attachment)|virenwarnung|virus gefunden|virus d[ée]tect[ée]|virus detectado|"
    r"virus rilevato|v[íi]rus detectado)",
    re.IGNORECASE)

_READ_RECEIPT_PREFIXES = [
    r"read", r"not read", r"return receipt(?: \([^)]*\))?", r"read receipt", r"read report",
    r"gelesen", r"nicht gelesen", r"lesebest[äa]tigung", r"lu", r"non lu", r"accus[ée] de lecture",
    r"le[íi]do", r"no le[íi]do", r"confirmaci[óo]n de lectura", r"letto", r"non letto", r"conferma di lettura",
    r"lido", r"n[ãa]o lido", r"confirma[çc][ãa]o de leitura", r"gelezen", r"niet gelezen", r"leesbevestiging",
]


def _prefix(words: list[str]) -> re.Pattern[str]:
    return re.compile(r"^\s*(?:" + "|".join(words) + r")\s*:", re.IGNORECASE)


def _whole(words: list[str]) -> re.Pattern[str]:
    return re.compile(r"^\s*(?:" + "|".join(words) + r")\s*(?:[-–—(\[].*)?$", re.IGNORECASE)


_AUTO_REPLY = [_prefix(_AUTO_REPLY_PREFIXES), _whole(_AUTO_REPLY_WHOLE),
               re.compile(r"^\s*(?:" + "|".join(_AUTO_REPLY_TAGS) + r")", re.IGNORECASE),
               re.compile(r"(?:" + "|".join(_AUTO_REPLY_TAIL) + r")\s*$", re.IGNORECASE)]
_BOUNCE = [_prefix(_BOUNCE_PREFIXES), _whole(_BOUNCE_WHOLE)]
_READ_RECEIPT = [_prefix(_READ_RECEIPT_PREFIXES)]


def auto_reply_subject(subject: str) -> bool:
    """Shaped like an out-of-office or other automatic reply ("Automatic reply: …", "Abwesenheitsnotiz: …")."""
    return any(p.search(subject) for p in _AUTO_REPLY)


def auto_reply_prefix(subject: str) -> bool:
    """Only the "<responder's words>: <original subject>" and [AUTO GENERATED] shapes: what a mail
    client writes, and a person practically never types."""
    return bool(_AUTO_REPLY[0].search(subject) or _AUTO_REPLY[2].search(subject))


_REPLY_OR_FORWARD = re.compile(r"^\s*(?:re|aw|sv|vs|antw|r|rif|res|fw|fwd|wg|tr|rv|enc)\s*:", re.IGNORECASE)


def responder_subject(subject: str) -> bool:
    """The shapes a responder gives a mail that answers one of ours: its prefix on our subject, or a
    subject of its own ("Mark Cook is out of the office.", "Abwesenheitsnotiz") where a person
    answering would have kept "Re: ...". For known senders, together with a sign that it answers us."""
    if auto_reply_prefix(subject):
        return True
    return not _REPLY_OR_FORWARD.match(subject) and bool(_AUTO_REPLY[1].search(subject)
                                                          or _AUTO_REPLY[3].search(subject))


def bounce_subject(subject: str) -> bool:
    """Shaped like a non-delivery notice ("Undeliverable: …", "failure notice", "Unzustellbar: …")."""
    return any(p.search(subject) for p in _BOUNCE) or scanner_subject(subject)


def scanner_subject(subject: str) -> bool:
    """A virus or content scanner saying it stopped a message."""
    return bool(_SCANNER.search(subject))


# Notices that a message is only late: the server still tries (some formats say so only here).
_DELAY = re.compile(
    r"^\s*(?:warning: message \S+ delayed|warning: could not send message|delayed mail|"
    r"delivery status notification \(delay\)|message delayed|delivery delayed|verz[öo]gerte zustellung|"
    r"remise diff[ée]r[ée]e|entrega retrasada|recapito ritardato|entrega atrasada|vertraagde bezorging)",
    re.IGNORECASE)


def delay_subject(subject: str) -> bool:
    """A warning that delivery is late, not failed ("Warning: message … delayed 24 hours")."""
    return bool(_DELAY.search(subject))


def read_receipt_subject(subject: str) -> bool:
    """Shaped like a read receipt ("Read: …", "Gelesen: …", "Lu : …")."""
    return any(p.search(subject) for p in _READ_RECEIPT)


# Complaint notices that are not RFC 5965 reports (Hotmail's "complaint about message from <ip>").
_COMPLAINT = re.compile(r"^\s*(?:complaint about message from|abuse report\b|spam complaint\b)", re.IGNORECASE)


def complaint_subject(subject: str) -> bool:
    return bool(_COMPLAINT.search(subject))

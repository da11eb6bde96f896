"""What a reply to training mail asks for, without a form: register or cancel, for whom; or "unclear".

Read from the new text of the reply only (quoted history, our footer and ">" lines dropped), in the
common languages: English, German, French, Spanish, Italian, Portuguese and Dutch. Words are matched
whole, after lower-casing and removing accents, so "Inscrição" and "inscricao" are the same word.

* **register**: a registering word ("register", "sign me up", "count me in", "anmelden", "inscrire",
  "inscribirme", "iscrivermi", "inscrever", "aanmelden"...), or a bare "yes" ("ja", "oui", "sí"...).
* **cancel**: a cancelling word or phrase ("cancel", "can't come", "absagen", "annuler", "no podré",
  "disdire", "não posso", "afmelden"...). A registration noun next to it ("cancel my registration")
  does not make it a registration.
* **for whom**: every address written in the text (the writer's own means themselves), contacts of
  the partner named by full name or by a first name only one of them has, and the writer when they
  say "me"/"mich"/"moi"/"me"/"mi"/"eu"/"mij" (or "X and I"), or name nobody else at all.
* **unclear** (it goes to staff as a normal support thread): both or neither kind of word, a negation in
  the same sentence as the word ("please don't register me", "I can't wait to attend!"), or someone
  mentioned ("my colleague") without an address or a name we know.

A question mark anywhere means there is more to read: the registration is still made, and the mail
also goes to staff as a support thread.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

from ..model import FROZEN, Contact

REGISTER = {
    "en": ["register", "registration", "sign up", "sign me up", "sign us up", "signup", "count me in", "count us in",
           "enrol", "enroll", "enrolment", "enrollment", "book", "book me", "reserve", "save me a seat",
           "save me a place", "attend", "join", "participate", "take part", "i'll be there", "i will be there",
           "we'll be there", "i'll come", "i will come", "add me", "put me down", "i'm in", "we're in"],
    "de": ["anmelden", "anmeldung", "melde mich an", "melden sie mich an", "melden mich an", "registrieren", "registrierung",
           "teilnehmen", "teilnahme", "nehme teil", "buchen", "reservieren", "ich bin dabei", "wir sind dabei"],
    "fr": ["inscrire", "m'inscrire", "m'inscris", "inscris", "inscrivez", "inscrivez-moi", "inscription", "participer",
           "participerai", "reserver", "je viens", "je serai la", "nous serons la"],
    "es": ["inscribir", "inscribirme", "inscribeme", "inscriban", "inscribo", "me apunto", "inscriba", "inscripcion", "apuntar", "apuntarme",
           "apuntame", "registrar", "registrarme", "registreme", "reservar", "participar", "participare",
           "asistir", "asistire", "alli estare"],
    "it": ["iscrivere", "iscrivermi", "iscrivi", "iscrivo", "iscrivetemi", "iscrizione", "registrare", "registrarmi",
           "registratemi", "prenotare", "prenota", "prenotatemi", "iscrivete", "iscriva", "partecipare", "partecipo", "partecipero",
           "ci saro"],
    "pt": ["inscrever", "inscrever-me", "inscrevo", "inscreva", "inscreva-me", "inscrevam", "inscricao", "registrar", "registre",
           "reservar", "participar", "participarei", "vou participar", "estarei la"],
    "nl": ["aanmelden", "aanmelding", "meld mij aan", "meld me aan", "inschrijven", "inschrijving",
           "schrijf mij in", "schrijf me in", "registreren", "deelnemen", "neem deel", "reserveren",
           "ik ben erbij", "ik kom"],
}
# A noun about a registration: no request by itself beside a cancelling word ("cancel my registration").
REGISTER_NOUNS = {"registration", "signup", "enrolment", "enrollment", "anmeldung", "registrierung", "teilnahme",
                  "inscription", "inscripcion", "iscrizione", "inscricao", "aanmelding", "inschrijving"}
CANCEL = {
    "en": ["cancel", "cancellation", "unregister", "deregister", "withdraw", "drop out", "can't come",
           "cannot come", "can't make it", "cannot make it", "can't attend", "cannot attend", "won't be able",
           "will not be able", "not able to attend", "unable to attend", "no longer", "not coming", "remove me",
           "take me off"],
    "de": ["absagen", "absage", "abmelden", "abmeldung", "melde mich ab", "melden sie mich ab", "stornieren",
           "storno", "stornierung", "kann nicht", "nicht teilnehmen", "nicht dabei"],
    "fr": ["annuler", "annulation", "annulez", "desinscrire", "desinscrivez", "desinscription", "me desister",
           "ne pourrai pas", "ne peux pas", "ne viendrai pas", "ne pourrons pas"],
    "es": ["cancelar", "cancela", "cancelen", "cancelacion", "anular", "darme de baja", "dar de baja",
           "no podre", "no puedo", "no asistire", "no podremos"],
    "it": ["annullare", "annulla", "annullate", "annullamento", "disdire", "disdetta", "cancellare", "cancellami",
           "cancellatemi", "non potro", "non posso", "non partecipero", "non potremo"],
    "pt": ["cancelar", "cancele", "cancelamento", "desmarcar", "nao poderei", "nao posso", "nao vou",
           "nao poderemos"],
    "nl": ["afmelden", "afmelding", "meld mij af", "meld me af", "annuleren", "uitschrijven", "schrijf mij uit",
           "kan niet", "niet komen", "niet deelnemen"],
}
YES = {"yes", "yep", "yeah", "sure", "ok", "okay", "ja", "jawohl", "gerne", "oui", "volontiers", "si", "claro",
       "certo", "sim", "graag"}
NEGATIONS = {"not", "no", "don't", "dont", "do not", "can't", "cant", "cannot", "won't", "wont", "never", "unable",
             "nicht", "kein", "keine", "nie", "pas", "jamais", "non", "nao", "niet", "geen", "nooit"}
# "me" and its kin, as objects: the writer asks for themselves. (Subject pronouns do not count: "I would
# like to register my colleague" is not about the writer; "Giulia and I" is, below.)
SELF = {"me", "myself", "mich", "mir", "moi", "mij"}
SELF_PHRASES = ["and i", "und ich", "et moi", "y yo", "e io", "e eu", "en ik", "i'll be there", "i will be there",
                "mi iscrivo", "me inscribo", "me inscrevo", "m'inscris", "m'inscrire",
                "i'll come", "i will come", "i'm in", "ich bin dabei", "je viens", "je serai la", "alli estare",
                "ci saro", "estarei la", "ik kom", "ik ben erbij", "nehme teil", "participerai", "asistire",
                "participare", "partecipo", "partecipero", "participarei", "vou participar", "neem deel",
                # first-person verb forms: "no podré" is the writer; "Giulia no podrá" would not match
                "ne pourrai pas", "ne peux pas", "ne viendrai pas", "no podre", "no puedo", "no asistire",
                "non potro", "non posso", "non partecipero", "nao poderei", "nao posso", "nao vou"]
# Someone else, not named: we cannot tell whom.
OTHERS = {"colleague", "colleagues", "coworker", "coworkers", "co-worker", "co-workers", "teammate", "teammates",
          "him", "her", "them", "kollege", "kollegin", "kollegen", "kolleginnen", "mitarbeiter", "mitarbeiterin",
          "collegue", "collegues", "collaborateur", "collaboratrice", "colega", "colegas", "companero", "companera",
          "collega", "colleghi", "collaboratore", "collaboratrice", "collega's"}
# Greetings and courtesy: a bare "yes" may come wrapped in them.
COURTESY = {"hi", "hello", "hey", "dear", "thanks", "thank", "you", "please", "regards", "best", "cheers", "hallo",
            "liebe", "lieber", "danke", "bitte", "gruss", "grusse", "bonjour", "merci", "cordialement", "salut",
            "hola", "gracias", "saludos", "ciao", "grazie", "saluti", "ola", "obrigado", "obrigada", "hoi",
            "bedankt", "groeten", "dank", "je", "wel", "team", "support", "open", "atrium", "of", "course"}

_ADDRESS = re.compile(r"[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+")
# Our instructions quote the words to reply with: 'reply "register me"'. Pasted back, they ask nothing.
_OUR_QUOTES = re.compile(r'["\u201c\u201d](?:please register me|register me|cancel|please register [^"\u201d]{0,40})'
                         r'["\u201c\u201d]', re.IGNORECASE)
_FOOTER = re.compile(r"this is an automated message from .*|to stop receiving .*|unsubscribe \S+", re.IGNORECASE)


def normalize(text: str, *, lower: bool = True) -> str:
    """Accents removed, typographic apostrophes straightened; lower case unless ``lower`` is False."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = unicodedata.normalize("NFKD", text.lower() if lower else text)
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def _line_key(line: str) -> str:
    return " ".join(normalize(line).split())


def new_text(reply_text: str, ours: frozenset[str] = frozenset()) -> str:
    """The writer's own words (case kept): ">" lines, lines of the mail of ours they answer (``ours``: as
    ``our_lines`` gives them, for clients that copy it without quote marks), our footer sentences and our
    quoted instructions ('reply "cancel"') left out."""
    lines = [ln for ln in reply_text.splitlines()
             if not ln.lstrip().startswith(">") and not (ours and _line_key(ln) in ours)]
    text = _FOOTER.sub(" ", "\n".join(lines)[:4000])
    return _OUR_QUOTES.sub(" ", text)


def our_lines(text: str) -> frozenset[str]:
    """The lines of a mail we sent, as ``new_text`` compares them (blank and very short lines left out)."""
    return frozenset(k for k in (_line_key(ln) for ln in text.splitlines()) if len(k) > 12)


# Separable verbs, with whatever stands between: "melden Sie Giulia an", "meld Giulia af", "schrijf ons in".
_SEPARABLE_REGISTER = [r"melden?\b[^.!?;\n]*?\ban", r"meld\b[^.!?;\n]*?\baan", r"schrijf\b[^.!?;\n]*?\bin"]
_SEPARABLE_CANCEL = [r"melden?\b[^.!?;\n]*?\bab", r"meld\b[^.!?;\n]*?\baf", r"schrijf\b[^.!?;\n]*?\buit"]


def _phrase_re(words: Sequence[str], patterns: Sequence[str] = ()) -> re.Pattern[str]:
    alts = sorted({re.escape(w) for w in words}, key=len, reverse=True)
    return re.compile(r"(?<![\w'])(?:" + "|".join(list(patterns) + alts) + r")(?![\w'])")


_REGISTER_RE = _phrase_re([w for ws in REGISTER.values() for w in ws], _SEPARABLE_REGISTER)
_CANCEL_RE = _phrase_re([w for ws in CANCEL.values() for w in ws], _SEPARABLE_CANCEL)
_SELF_PHRASE_RE = _phrase_re(SELF_PHRASES)
_NEGATION_RE = _phrase_re(sorted(NEGATIONS))
_SENTENCE_RE = re.compile(r"[^.!?;\n]+")


@dataclass(**FROZEN)
class Intent:
    action: str  # "register" | "cancel" | "unclear"
    addresses: tuple[str, ...] = ()  # whom, the writer included when they asked for themselves
    names: tuple[tuple[str, str], ...] = ()  # (address, display name) for addresses written as "Name <addr>"
    question: bool = False  # the text asks something too: staff should read it
    reason: str = ""  # for people: why it was understood so (or not)


def _words(text: str) -> list[str]:
    """Words without apostrophes: "don't" -> "don", "t"; "I'm" is read as "i am" first."""
    return re.findall(r"[a-z0-9]+", re.sub(r"\bi'm\b", "i am", text))


def _display_names(original: str) -> dict[str, str]:
    """Addresses written as "Giulia Rossi <giulia@x>": address -> name (up to four capitalised words)."""
    out = {}
    for m in re.finditer(r"((?:[A-Z][\w'.-]*\s+){0,3}[A-Z][\w'.-]*)\s*<\s*([^<>\s@]+@[^<>\s]+)\s*>", original):
        out[m.group(2).lower()] = m.group(1).strip(" .,;:-")
    return out


def _negated(sentence: str, spans: Sequence[tuple[int, int]]) -> bool:
    """A negation word in the sentence, outside the matched phrases (a cancelling phrase may hold one)."""
    return any(not any(a <= m.start() < b for a, b in spans) for m in _NEGATION_RE.finditer(sentence))


def understand(reply_text: str, *, sender: str, contacts: Sequence[Contact] = (),
               ignore: frozenset[str] = frozenset(), ours: frozenset[str] = frozenset()) -> Intent:
    """What the new text of a reply asks for. ``contacts``: the writer's partner's contacts (for names);
    ``ignore``: addresses that are never a registrant (ours, staff); ``ours``: the lines of the mail it
    answers (``our_lines``), which are not the writer's words even when not marked as quoted."""
    original = normalize(new_text(reply_text, ours), lower=False)  # case kept: names are capitalised
    text = original.lower()
    question = "?" in text
    sentences = [s.strip() for s in _SENTENCE_RE.findall(text) if s.strip()]
    register = cancel = negated = False
    for s in sentences:
        cancels = list(_CANCEL_RE.finditer(s))
        # "cancel my registration", "can't attend", "non posso partecipare": a registering word inside or
        # beside a cancelling one, or in a sentence that says it cannot, is part of the cancellation.
        negative = any(_NEGATION_RE.search(c.group(0)) for c in cancels)
        registers = [m for m in _REGISTER_RE.finditer(s)
                     if not negative and not (cancels and m.group(0) in REGISTER_NOUNS)
                     and not any(c.start() <= m.start() < c.end() or m.start() <= c.start() < m.end() for c in cancels)]
        cancel_spans = [m.span() for m in cancels]
        for m in cancels:
            # "No, I can't attend": a phrase that is negative itself stays a cancellation.
            if _negated(s, cancel_spans) and not _NEGATION_RE.search(m.group(0)):
                negated = True
            else:
                cancel = True
        for m in registers:
            if _negated(s, cancel_spans + [m.span()]):
                negated = True
            else:
                register = True
    words = _words(text)
    if not register and not cancel and words and any(w in YES for w in words) \
            and all(w in YES or w in COURTESY or w in SELF for w in words):
        register = True  # "Yes, thank you!"
    if negated and not (register or cancel):
        return Intent(action="unclear", question=question, reason="a negation beside the request: not sure what is meant")
    if register == cancel:
        return Intent(action="unclear", question=question,
                      reason="asks both to register and to cancel" if register else "no request to register or cancel")
    action = "register" if register else "cancel"
    if negated:
        return Intent(action="unclear", question=question, reason=f"a negation beside the request to {action}")

    written = [a for a in dict.fromkeys(_ADDRESS.findall(text)) if a not in ignore]
    named = [a for a in written if a != sender]
    names = _display_names(original)
    for c in _named_contacts(original, contacts, sender):
        if c.email not in named:
            named.append(c.email)
            names.setdefault(c.email, c.name)
    self_ = (sender in written or any(w in SELF for w in words) or bool(_SELF_PHRASE_RE.search(text))
             or bool(re.search(r"(?<![a-z])m'[a-z]", text.replace("i'm", "i am"))) or not named)
    if not named and any(w in OTHERS for w in words):
        return Intent(action="unclear", question=question,
                      reason="mentions someone else without an address or a name we know")
    who = ([sender] if self_ else []) + named
    return Intent(action=action, addresses=tuple(who), names=tuple((a, names[a]) for a in who if a in names),
                  question=question, reason=f"{action} {', '.join(who)}")


def _named_contacts(original: str, contacts: Sequence[Contact], sender: str) -> list[Contact]:
    """Contacts (other than the writer) named in the text by full name, or by a capitalised first name only
    one of them has ("Will" is a name, "will" is not). A sign-off line at the end (a name alone) is the
    writer's, not a request."""
    lines = [ln.strip() for ln in original.splitlines() if ln.strip()]
    if len(lines) > 1 and len(lines[-1].split()) <= 3 and not _REGISTER_RE.search(lines[-1].lower()) \
            and not _CANCEL_RE.search(lines[-1].lower()) and "@" not in lines[-1]:
        lines = lines[:-1]
    body = " " + " ".join(lines) + " "
    lower = body.lower()
    others = [c for c in contacts if c.email != sender and c.name.strip()]
    firsts: dict[str, list[Contact]] = {}
    for c in others:
        first = normalize(c.name).split()[0]
        if len(first) >= 3:
            firsts.setdefault(first, []).append(c)
    found = []
    for c in others:
        full = normalize(c.name).strip()
        first = full.split()[0]
        if re.search(rf"(?<![\w]){re.escape(full)}(?![\w])", lower) or (
                len(firsts.get(first, ())) == 1
                and re.search(rf"(?<![\w']){re.escape(first.capitalize())}(?![\w])", body)):
            found.append(c)
    return found


# -- staff commands on training mail ----------------------------------------------------------------------------
STAFF_COMMANDS = {
    "approve": "#approve: give the held registration an extra place (reply to the approval request)",
    "decline": "#decline [reason]: no extra place; the reason, if any, is passed on to the partner",
    "attended": "#attended [TRAINING-ID] all | ADDRESS...: they completed the course (grants the support seat)",
    "absent": "#absent [TRAINING-ID] ADDRESS...: a no-show (the included place stays free this term)",
}
_CMD_RE = re.compile(r"^#(approve|decline|attended|attendance|absent|noshow|no-show)(?![\w-])[:\s]*(.*)$",
                     re.IGNORECASE)
_TRAINING_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(**FROZEN)
class StaffCommand:
    name: str  # a key of STAFF_COMMANDS
    training_id: str = ""  # named in the command ("#attended training-2027-03-08 ...")
    addresses: tuple[str, ...] = ()
    everyone: bool = False  # "#attended all"
    text: str = ""  # what follows the command (a reason for #decline)
    line: str = ""


def parse_staff_command(text: str) -> StaffCommand | None:
    """The training command on the first non-empty line of a staff mail, or None."""
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    m = _CMD_RE.match(first)
    if not m:
        return None
    name = {"attendance": "attended", "noshow": "absent", "no-show": "absent"}.get(m.group(1).lower(),
                                                                                   m.group(1).lower())
    rest = m.group(2).strip()
    words = rest.replace(",", " ").split()
    tid = ""
    if name in ("attended", "absent") and words and "@" not in words[0] and words[0].lower() != "all" \
            and _TRAINING_ID.match(words[0].lower()):
        tid = words.pop(0).lower()
    addresses = tuple(dict.fromkeys(w.strip("<>;.").lower() for w in words if "@" in w))
    return StaffCommand(name=name, training_id=tid, addresses=addresses,
                        everyone=any(w.lower() == "all" for w in words), text=rest, line=first)

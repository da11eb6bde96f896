"""OutgoingMail -> RFC 5322 bytes, from Jinja2 templates.

Each kind of mail has one template, ``templates/<name>.txt.j2``. The text part is
rendered from it; the HTML part is a designed page made from that same text
(mailbox/html_mail.py, templates/mail.html.j2), so the two say the same. Templates
run in Jinja2's sandbox with undefined variables as errors: partner-written text
is only ever *data* in the context, and the HTML escapes it through autoescaping.

The output is 7-bit clean (quoted-printable or base64 where needed) so it can be
stored as text in the outbox and sent by any server.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

from workflows.model import OutgoingMail

from .html_mail import HtmlMail

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
POLICY = email.policy.SMTP.clone(cte_type="7bit", max_line_length=998)


def _header_safe(value: str) -> str:
    return re.sub(r"[\r\n]+", " ", value).strip()


def text_to_html(text: str, *, program_name: str = "Open Atrium Partners Program", kind: str = "",
                 subject: str = "") -> str:
    """The HTML alternative of ``text`` alone (no call to action): for tests and previews."""
    return HtmlMail(TEMPLATES_DIR, program_name=program_name).render(
        text, kind=kind, subject=subject, context={}, calendar=None, support_address="", support_name="")


class Composer:
    def __init__(self, *, support_address: str, support_name: str, templates_dir: Path = TEMPLATES_DIR,
                 globals_: dict[str, Any] | None = None, program_name: str = "Open Atrium Partners Program") -> None:
        self.support_address = support_address
        self.support_name = support_name
        self.html = HtmlMail(templates_dir, program_name=program_name)
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(str(templates_dir)),
            undefined=StrictUndefined,
            autoescape=False,  # text templates; the HTML part is escaped as a whole in text_to_html
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(globals_ or {})

    def render_text(self, template: str, context: dict[str, Any]) -> str:
        try:
            tpl = self.env.get_template(f"{template}.txt.j2")
        except TemplateNotFound as e:
            raise RuntimeError(f"template {template}.txt.j2 is missing from {TEMPLATES_DIR}") from e
        return tpl.render(**context)

    def render(self, out: OutgoingMail, *, message_id: str, date: datetime) -> bytes:
        context = dict(out.context)
        if out.body_text is not None:
            context["body"] = out.body_text
        text = self.render_text(out.template, context)

        msg = EmailMessage(policy=POLICY)
        local, _, domain = self.support_address.partition("@")
        msg["From"] = Address(display_name=_header_safe(out.from_name or self.support_name), username=local,
                              domain=domain)
        msg["To"] = ", ".join(out.to)
        msg["Subject"] = _header_safe(out.subject)
        msg["Date"] = email.utils.format_datetime(date)
        msg["Message-ID"] = message_id
        if out.reply_to_support:
            msg["Reply-To"] = Address(display_name=self.support_name, username=local, domain=domain)
        if out.in_reply_to:
            msg["In-Reply-To"] = out.in_reply_to
        refs = list(dict.fromkeys(out.references))
        if refs:
            msg["References"] = " ".join(refs[-20:])
        if out.automatic:
            # RFC 3834: say it is automatic, so that well-behaved autoresponders stay quiet.
            msg["Auto-Submitted"] = out.auto_kind
        for name, value in out.extra_headers:
            msg[name] = _header_safe(value)
        if out.thread_id:
            msg["X-Partnerdesk-Thread"] = out.thread_id
        msg["X-Partnerdesk-Kind"] = out.kind
        msg.set_content(text, charset="utf-8")
        msg.add_alternative(self.html.render(text, kind=out.kind, subject=out.subject, context=context,
                                             calendar=out.calendar, support_address=self.support_address,
                                             support_name=self.support_name, personal=out.body_text is not None),
                            subtype="html", charset="utf-8")
        if out.calendar is not None:
            self._add_calendar(msg, out.calendar, domain, date)
        for a in out.attachments:
            maintype, _, subtype = a.content_type.partition("/")
            msg.add_attachment(a.data, maintype=maintype or "application", subtype=subtype or "octet-stream",
                               filename=_header_safe(a.filename))
        return msg.as_bytes(policy=POLICY)

    def _add_calendar(self, msg: EmailMessage, event: Any, domain: str, date: datetime) -> None:
        """An invitation as mail clients expect it (what Google Calendar sends): the iTIP body as a third
        alternative, text/calendar; method=REQUEST|CANCEL, which clients turn into Accept/Decline
        buttons, plus the same data as an invite.ics attachment for clients that only import files."""
        from .ical import build

        ics = build(event, organizer=self.support_address, organizer_name=self.support_name, domain=domain,
                    stamp=date)
        msg.add_alternative(ics, subtype="calendar", charset="utf-8", params={"method": event.method})
        msg.add_attachment(ics.encode("utf-8"), maintype="application", subtype="ics", filename="invite.ics")

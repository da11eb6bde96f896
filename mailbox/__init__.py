"""partnerdesk's mail I/O: IMAP source, SMTP sender, local spool, parsing and composing.

This package shadows the standard library's ``mailbox`` on purpose (the product
owner's layout). Keep this file free of imports and side effects: aiosmtpd's
handlers module does ``import mailbox`` and must not pull our adapters in.
"""

PARTNERDESK_MAILBOX = True  # tests/test_layout.py checks this marker to prove ours was imported

"""Real-looking bounces: Postfix DSNs (as the test Postfix writes them), RFC 3464's
examples, and the plain-text bounces of qmail and Exim."""

from __future__ import annotations

from tests.unit.mail.mime_samples import msg

# What the test Postfix returned for a message sent without DSN parameters (RET=FULL
# by default): the whole original in message/rfc822, no Original-Envelope-Id.
POSTFIX_FULL = msg("""
    Return-Path: <>
    Delivered-To: alice@example.test
    Received: by mail.example.test (Postfix)
    \tid 89EE320C734; Mon,  7 Dec 2026 06:02:23 +0000 (UTC)
    Date: Mon,  7 Dec 2026 06:02:23 +0000 (UTC)
    From: Mail Delivery System <MAILER-DAEMON@mail.example.test>
    Subject: Undelivered Mail Returned to Sender
    To: alice@example.test
    Auto-Submitted: auto-replied
    MIME-Version: 1.0
    Content-Type: multipart/report; report-type=delivery-status;
    \tboundary="499E520C116.1796623343/mail.example.test"
    Content-Transfer-Encoding: 8bit
    Message-Id: <20261207060223.89EE320C734@mail.example.test>

    This is a MIME-encapsulated message.

    --499E520C116.1796623343/mail.example.test
    Content-Description: Notification
    Content-Type: text/plain; charset=utf-8
    Content-Transfer-Encoding: 8bit

    This is the mail system at host mail.example.test.

    I'm sorry to have to inform you that your message could not
    be delivered to one or more recipients. It's attached below.

                       The mail system

    <nobody@example.test>: host 127.0.0.1[127.0.0.1] said: 550 5.1.1
        <nobody@example.test> User doesn't exist: nobody@example.test
        (in reply to RCPT TO command)

    --499E520C116.1796623343/mail.example.test
    Content-Description: Delivery report
    Content-Type: message/delivery-status

    Reporting-MTA: dns; mail.example.test
    X-Postfix-Queue-ID: 499E520C116
    X-Postfix-Sender: rfc822; alice@example.test
    Arrival-Date: Mon,  7 Dec 2026 06:02:23 +0000 (UTC)

    Final-Recipient: rfc822; nobody@example.test
    Original-Recipient: rfc822;nobody@example.test
    Action: failed
    Status: 5.1.1
    Remote-MTA: dns; 127.0.0.1
    Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.test> User doesn't
        exist: nobody@example.test

    --499E520C116.1796623343/mail.example.test
    Content-Description: Undelivered Message
    Content-Type: message/rfc822
    Content-Transfer-Encoding: 8bit

    Return-Path: <alice@example.test>
    From: Alice <alice@example.test>
    To: nobody@example.test, bob@example.test
    Subject: probe
    Date: Mon, 07 Dec 2026 06:02:23 +0000
    Message-ID: <179662334302.15276.11529989624090163638@example.test>
    Content-Type: text/plain; charset="utf-8"
    MIME-Version: 1.0

    <bob@example.test>: not a recipient line, the original's own text

    --499E520C116.1796623343/mail.example.test--
""")

# Postfix's DSN for a message sent with ENVID, ORCPT and RET=HDRS (RFC 3461), CRLF lines.
POSTFIX_HDRS = msg(
    """
    Return-Path: <>
    From: Mail Delivery System <MAILER-DAEMON@mail.example.test>
    Subject: Undelivered Mail Returned to Sender
    To: alice@example.test
    MIME-Version: 1.0
    Content-Type: multipart/report; report-type=delivery-status;
    \tboundary="6C1E620C12A.1796623400/mail.example.test"
    Message-Id: <20261207060320.7A0A720C734@mail.example.test>

    --6C1E620C12A.1796623400/mail.example.test
    Content-Description: Notification
    Content-Type: text/plain; charset=utf-8

    <gone@example.test> (expanded from <Gone@Example.test>): host 127.0.0.1[127.0.0.1]
        said: 550 5.1.1 <gone@example.test> User doesn't exist (in reply to RCPT TO
        command)

    --6C1E620C12A.1796623400/mail.example.test
    Content-Description: Delivery report
    Content-Type: message/delivery-status

    Reporting-MTA: dns; mail.example.test
    Original-Envelope-Id: 0b1e5a0c-3c55-4f0e-9d38-2f0f8f5b7a11
    Arrival-Date: Mon,  7 Dec 2026 06:03:20 +0000 (UTC)

    Final-Recipient: rfc822; gone@example.test
    Original-Recipient: rfc822;Gone@Example.test
    Action: failed
    Status: 5.1.1
    Diagnostic-Code: smtp; 550 5.1.1 <gone@example.test> User doesn't exist

    --6C1E620C12A.1796623400/mail.example.test
    Content-Description: Undelivered Message Headers
    Content-Type: text/rfc822-headers

    From: Alice <alice@example.test>
    To: Gone@Example.test
    Subject: hello
    Message-ID: <hdrs.1@example.test>

    --6C1E620C12A.1796623400/mail.example.test--
    """,
    crlf=True,
)

# After RFC 3464 appendix A.3: one report about three recipients, with comments in Status.
RFC3464_MULTIPLE = msg("""
    Date: Fri, 8 Jul 1994 09:21:47 -0400 (EDT)
    From: Mail Delivery Subsystem <MAILER-DAEMON@CS.UTK.EDU>
    Subject: Returned mail: User unknown
    To: <owner-info-mime@cs.utk.edu>
    MIME-Version: 1.0
    Content-Type: multipart/report; report-type="delivery-status";
        boundary="JAA13167.773673707/CS.UTK.EDU"

    --JAA13167.773673707/CS.UTK.EDU
    content-type: text/plain; charset=us-ascii

       ----- The following addresses had delivery problems -----
    <arathib@vnet.ibm.com>  (unrecoverable error)
    <wsnell@sdcc13.ucsd.edu>  (unrecoverable error)

    --JAA13167.773673707/CS.UTK.EDU
    content-type: message/delivery-status

    Reporting-MTA: dns; cs.utk.edu
    Original-Envelope-Id: 0GK500B4HD0888@cc.cmu.edu

    Original-Recipient: rfc822;arathib@vnet.ibm.com
    Final-Recipient: rfc822;arathib@vnet.ibm.com
    Action: failed
    Status: 5.0.0 (permanent failure)
    Diagnostic-Code: smtp;  550 'arathib@vnet.IBM.COM' is not a
        registered gateway user
    Remote-MTA: dns; vnet.ibm.com

    Original-Recipient: rfc822;johnh@hpnjld.njd.hp.com
    Final-Recipient: rfc822;johnh@hpnjld.njd.hp.com
    Action: delayed
    Status: 4.0.0 (hpnjld.njd.jp.com: host name lookup failure)

    Original-Recipient: rfc822;wsnell@sdcc13.ucsd.edu
    Final-Recipient: rfc822;wsnell@sdcc13.ucsd.edu
    Action: failed
    Status: 5.0.0
    Diagnostic-Code: smtp; 550 user unknown
    Remote-MTA: dns; sdcc13.ucsd.edu

    --JAA13167.773673707/CS.UTK.EDU
    content-type: message/rfc822

    Date: Fri, 8 Jul 1994 09:20:00 -0400
    From: owner-info-mime@cs.utk.edu
    Message-ID: <rfc3464.a3@cs.utk.edu>
    Subject: the original

    body
    --JAA13167.773673707/CS.UTK.EDU--
""")

QMAIL = msg("""
    Return-Path: <>
    From: MAILER-DAEMON@mx.example.org
    To: alice@example.test
    Subject: failure notice

    Hi. This is the qmail-send program at mx.example.org.
    I'm afraid I wasn't able to deliver your message to the following addresses.
    This is a permanent error; I've given up. Sorry it didn't work out.

    <nobody@example.org>:
    192.0.2.7 does not like recipient.
    Remote host said: 550 5.1.1 <nobody@example.org>... User unknown
    Giving up on 192.0.2.7.

    <Old@Example.org>:
    Sorry, no mailbox here by that name. (#5.1.1)

    --- Below this line is a copy of the message.

    Return-Path: <alice@example.test>
    From: Alice <alice@example.test>
    To: nobody@example.org, Old@Example.org
    Subject: hello
    Message-ID: <qmail.original@example.test>

    <someone@example.org>: a line of the original body
""")

EXIM = msg("""
    Return-path: <>
    From: Mail Delivery System <Mailer-Daemon@mx.example.net>
    To: alice@example.test
    Subject: Mail delivery failed: returning message to sender
    Auto-Submitted: auto-replied

    This message was created automatically by mail delivery software.

    A message that you sent could not be delivered to one or more of its
    recipients. This is a permanent error. The following address(es) failed:

      nobody@example.net
        host mx2.example.net [192.0.2.9]
        SMTP error from remote mail server after RCPT TO:<nobody@example.net>:
        550 Unrouteable address

    ------ This is a copy of the message, including all the headers. ------

    Return-path: <alice@example.test>
    From: Alice <alice@example.test>
    Message-Id: <exim.original@example.test>
    Subject: hello

    body
""")

# Not bounces: a person's message with a bounce-like subject, and a read receipt.
PERSON = msg("""
    Return-Path: <carol@example.test>
    From: Carol <carol@example.test>
    Subject: Undeliverable: the parcel you sent
    Message-ID: <person@example.test>

    <alice@example.test>: your parcel came back, 550 reasons.
""")
READ_RECEIPT = msg("""
    From: Bob <bob@example.test>
    Subject: Read: hello
    MIME-Version: 1.0
    Content-Type: multipart/report; report-type=disposition-notification; boundary="b"

    --b
    Content-Type: message/disposition-notification

    Final-Recipient: rfc822; bob@example.test
    Disposition: manual-action/MDN-sent-manually; displayed
    --b--
""")

"""LIST and STATUS responses into :class:`Folder` values, with special-use roles.

Roles come from RFC 6154 §2 attributes (and the older Gmail XLIST ones) first; a role no
folder claims by attribute is given by name to at most one folder, the shallowest and
first listed, so servers without SPECIAL-USE still get their Sent, Trash, etc.
"""

from __future__ import annotations

from dataclasses import dataclass

from email_service.mail.imap.codec import Arg, decode_folder_name, mailbox_arg
from email_service.mail.imap.conn import ImapConnection
from email_service.mail.imap.fetch import stream_fetch
from email_service.mail.imap.parse import ImapProtocolError, Response, number_of, text_of
from email_service.mail.imap.types import Folder, FolderStatus

# RFC 6154 §2 special-use attributes, plus Gmail's pre-standard XLIST names.
ATTRIBUTE_ROLES = {
    "\\sent": "sent",
    "\\drafts": "drafts",
    "\\trash": "trash",
    "\\junk": "junk",
    "\\archive": "archive",
    "\\all": "all",
    "\\flagged": "flagged",
    "\\spam": "junk",
    "\\allmail": "all",
    "\\starred": "flagged",
    "\\inbox": "inbox",
}
# Folder names (last hierarchy level, case-folded) that common servers and clients use,
# in English and the most frequent localisations (Outlook/Exchange, Apple Mail,
# Thunderbird, Gmail, GMX/Web.de, Yahoo), for servers without SPECIAL-USE.
NAME_ROLES = {
    "sent": (
        "sent", "sent items", "sent messages", "sent mail", "sent-mail", "sent e-mails",
        "gesendet", "gesendete objekte", "gesendete elemente", "gesendete nachrichten",
        "envoyés", "éléments envoyés", "messages envoyés", "enviados", "elementos enviados",
        "posta inviata", "inviata", "verzonden", "verzonden items", "skickat",
        "skickade objekt", "sendt", "sendte elementer", "wysłane", "отправленные",
        "送信済み", "已发送", "寄件備份", "보낸편지함",
    ),
    "drafts": (
        "drafts", "draft", "entwürfe", "brouillons", "borradores", "bozze", "concepten",
        "utkast", "kladder", "kopie robocze", "черновики", "下書き", "草稿", "임시보관함",
    ),
    "trash": (
        "trash", "deleted items", "deleted messages", "deleted", "bin", "papierkorb",
        "gelöschte objekte", "gelöschte elemente", "corbeille", "éléments supprimés",
        "papelera", "elementos eliminados", "cestino", "prullenbak", "verwijderde items",
        "papperskorgen", "slettet", "kosz", "корзина", "ゴミ箱", "已删除", "휴지통",
    ),
    "junk": (
        "junk", "junk e-mail", "junk email", "junk mail", "spam", "bulk mail",
        "spamverdacht", "unerwünscht", "courrier indésirable", "indésirables",
        "correo no deseado", "posta indesiderata", "ongewenste e-mail", "skräppost",
        "søppelpost", "спам", "迷惑メール", "垃圾邮件", "스팸편지함",
    ),
    "archive": (
        "archive", "archives", "archiv", "archivio", "archivo", "archief", "arkiv", "архив",
    ),
    "all": ("all mail", "alle nachrichten", "tous les messages", "todos"),
    "flagged": ("starred", "flagged", "markiert"),
}  # fmt: skip
_ROLE_BY_NAME = {name: role for role, names in NAME_ROLES.items() for name in names}
# The RFC 6154 §2 attribute a folder is created with for a role (§3 CREATE-SPECIAL-USE).
ROLE_ATTRIBUTES = {
    "sent": "\\Sent",
    "drafts": "\\Drafts",
    "trash": "\\Trash",
    "junk": "\\Junk",
    "archive": "\\Archive",
    "all": "\\All",
    "flagged": "\\Flagged",
}
# STATUS commands in flight for servers without LIST-STATUS (RFC 5819).
STATUS_PIPELINE = 8
# LIST attributes that mean there is no mailbox to SELECT (RFC 9051 §7.3.1, RFC 5258 §3).
UNSELECTABLE = frozenset({"\\noselect", "\\nonexistent"})


@dataclass(slots=True)
class ListEntry:
    """One ``* LIST`` response before roles are assigned."""

    raw_name: str
    delimiter: str | None
    flags: frozenset[str]

    @property
    def selectable(self) -> bool:
        """False for \\Noselect and \\NonExistent entries."""
        return not {flag.lower() for flag in self.flags} & UNSELECTABLE


def parse_list(response: Response) -> ListEntry:
    """``* LIST (attrs) delimiter name [extended data]`` (RFC 9051 §7.3.1, RFC 5258 §9)."""
    data = response.data
    if len(data) < 3 or not isinstance(data[0], list):
        raise ImapProtocolError(f"malformed LIST response {data!r:.200}")
    flags = frozenset(text_of(flag) for flag in data[0])
    delimiter = None if data[1] is None else text_of(data[1])
    return ListEntry(text_of(data[2]), delimiter, flags)


def parse_status(response: Response) -> tuple[str, FolderStatus]:
    """``* STATUS name (MESSAGES n UIDNEXT n ...)`` (RFC 9051 §7.3.4)."""
    data = response.data
    if len(data) != 2 or not isinstance(data[1], list) or len(data[1]) % 2:
        raise ImapProtocolError(f"malformed STATUS response {data!r:.200}")
    items = data[1]
    values = {text_of(items[i]).upper(): number_of(items[i + 1]) for i in range(0, len(items), 2)}
    status = FolderStatus(
        messages=values.get("MESSAGES", 0),
        uidnext=values.get("UIDNEXT", 0),
        uidvalidity=values.get("UIDVALIDITY", 0),
        # RFC 7162 §3.1.2.1: 0 means the mailbox does not keep mod-sequences.
        highestmodseq=values.get("HIGHESTMODSEQ") or None,
        unseen=values.get("UNSEEN"),
    )
    return mailbox_key(text_of(data[0])), status


def mailbox_key(raw_name: str) -> str:
    """The name as a dict key: INBOX is case-insensitive (RFC 9051 §5.1)."""
    return "INBOX" if raw_name.upper() == "INBOX" else raw_name


def role_by_name(entry: ListEntry) -> str | None:
    """Role that the entry's last hierarchy level suggests, if any."""
    name = decode_folder_name(entry.raw_name)
    leaf = name.rsplit(entry.delimiter, 1)[-1] if entry.delimiter else name
    return _ROLE_BY_NAME.get(leaf.strip().casefold())


def assign_roles(entries: list[ListEntry]) -> dict[str, str]:
    """raw name -> role: INBOX, then attributes, then names for roles still free."""
    roles: dict[str, str] = {}
    for entry in entries:
        if entry.raw_name.upper() == "INBOX":
            roles[entry.raw_name] = "inbox"
            continue
        for flag in entry.flags:
            role = ATTRIBUTE_ROLES.get(flag.lower())
            if role is not None:
                roles[entry.raw_name] = role
                break
    taken = set(roles.values())
    candidates = [e for e in entries if e.raw_name not in roles and e.selectable]
    candidates.sort(key=lambda e: e.raw_name.count(e.delimiter) if e.delimiter else 0)
    for entry in candidates:
        role = role_by_name(entry)
        if role is not None and role not in taken:
            roles[entry.raw_name] = role
            taken.add(role)
    return roles


def build_folders(entries: list[ListEntry], statuses: dict[str, FolderStatus]) -> list[Folder]:
    """Folders in LIST order with roles and the statuses found for them."""
    roles = assign_roles(entries)
    return [
        Folder(
            raw_name=entry.raw_name,
            name=decode_folder_name(entry.raw_name),
            delimiter=entry.delimiter,
            flags=entry.flags,
            role=roles.get(entry.raw_name),
            status=statuses.get(mailbox_key(entry.raw_name)),
            selectable=entry.selectable,
        )
        for entry in entries
    ]


def status_items(conn: ImapConnection) -> bytes:
    """The STATUS items we ask for; HIGHESTMODSEQ only with CONDSTORE (RFC 7162 §3.1.2)."""
    modseq = b" HIGHESTMODSEQ" if "CONDSTORE" in conn.capabilities else b""
    return b"(MESSAGES UIDNEXT UIDVALIDITY UNSEEN" + modseq + b")"


def list_folders(conn: ImapConnection, with_status: bool) -> list[Folder]:
    """LIST "" "*", with RETURN (SPECIAL-USE STATUS (...)) when offered (RFC 5258, 5819, 6154)."""
    entries: list[ListEntry] = []
    statuses: dict[str, FolderStatus] = {}

    def collect(response: Response) -> None:
        if response.kind == "LIST":
            entries.append(parse_list(response))
        elif response.kind == "STATUS":
            name, status = parse_status(response)
            statuses[name] = status

    returns = [b"SPECIAL-USE"] if "SPECIAL-USE" in conn.capabilities else []
    if "LIST-EXTENDED" in conn.capabilities:
        returns.append(b"SUBSCRIBED")  # RFC 5258 §4: \Subscribed among the attributes
    one_trip = with_status and "LIST-STATUS" in conn.capabilities
    if one_trip:
        returns.append(b"STATUS " + status_items(conn))
    command: list[Arg] = [b"LIST", b'""', b'"*"']
    if returns and {"LIST-EXTENDED", "LIST-STATUS"} & conn.capabilities:
        command += [b"RETURN", b"(" + b" ".join(returns) + b")"]
    conn.run(command, "LIST", collect)
    if with_status and not one_trip:
        statuses = _pipelined_status(conn, [e.raw_name for e in entries if e.selectable])
    return build_folders(entries, statuses)


def create_command(raw_name: str, role: str | None, capabilities: frozenset[str]) -> list[Arg]:
    """CREATE, with ``(USE (\\Attr))`` for a role if the server has CREATE-SPECIAL-USE.

    RFC 6154 §3; a server without it would refuse or ignore the parameter, so the folder
    is created plainly and gets its role only if the server or its name gives it one.
    """
    command: list[Arg] = [b"CREATE", mailbox_arg(raw_name)]
    if role is not None and "CREATE-SPECIAL-USE" in capabilities:
        command.append(b"(USE (" + ROLE_ATTRIBUTES[role].encode("ascii") + b"))")
    return command


def _pipelined_status(conn: ImapConnection, raw_names: list[str]) -> dict[str, FolderStatus]:
    items = status_items(conn)
    commands = ([b"STATUS", mailbox_arg(name), items] for name in raw_names)

    def convert(response: Response) -> tuple[str, FolderStatus] | None:
        return parse_status(response) if response.kind == "STATUS" else None

    def deleted_since_list(response: Response) -> bool:
        return response.kind == "NO"  # that folder just has no status

    found = stream_fetch(
        conn, commands, STATUS_PIPELINE, convert, what="STATUS", benign=deleted_since_list
    )
    return dict(found)


def folder_status(conn: ImapConnection, raw_name: str) -> FolderStatus:
    """STATUS of one folder (RFC 9051 §6.3.11)."""
    found: list[FolderStatus] = []

    def collect(response: Response) -> None:
        if response.kind == "STATUS":
            found.append(parse_status(response)[1])

    conn.run([b"STATUS", mailbox_arg(raw_name), status_items(conn)], "STATUS", collect)
    if not found:
        raise ImapProtocolError("STATUS answered without a STATUS response")
    return found[-1]

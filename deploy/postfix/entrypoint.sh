#!/bin/sh
# Entrypoint of the postfix container: the same main.cf and master.cf as the tests
# (deploy/postfix/, copied to /opt/email-service/postfix in the image) plus compose.cf.
#
#   MAIL_DOMAINS   domains delivered to Dovecot, comma-separated (default: example.test)
set -eu

SRC="${POSTFIX_DEPLOY_DIR:-/opt/email-service/postfix}"
CONF=/etc/postfix

cat "$SRC/main.cf" "$SRC/compose.cf" > "$CONF/main.cf"
cp "$SRC/master.cf" "$CONF/master.cf"
if [ -n "${MAIL_DOMAINS:-}" ]; then
  postconf -e "virtual_mailbox_domains = $MAIL_DOMAINS"
fi
postfix check
exec postfix start-fg

// An SMTP receiver that speaks TLS, for the tests of the mailer's `starttls` and `tls` modes
// (MailDev never offers STARTTLS). Built on smtp-server, the SMTP server MailDev itself uses.
// Each accepted message is appended to a JSON-lines file: envelope, whether the session was
// encrypted, and the raw message.
//
// Environment: SMTP_PORT, SMTP_MODE (starttls: plain connection upgraded by STARTTLS, required
// before MAIL; tls: TLS from the first byte), SMTP_CERT and SMTP_KEY (PEM), SMTP_DATA (file).
import fs from 'node:fs';
import { SMTPServer } from 'smtp-server';

const { SMTP_PORT, SMTP_MODE, SMTP_CERT, SMTP_KEY, SMTP_DATA } = process.env;
if (!SMTP_PORT || !['starttls', 'tls'].includes(SMTP_MODE) || !SMTP_CERT || !SMTP_KEY || !SMTP_DATA) {
  console.error('SMTP_PORT, SMTP_MODE (starttls|tls), SMTP_CERT, SMTP_KEY et SMTP_DATA sont nécessaires');
  process.exit(2);
}

const server = new SMTPServer({
  secure: SMTP_MODE === 'tls',
  key: fs.readFileSync(SMTP_KEY),
  cert: fs.readFileSync(SMTP_CERT),
  authOptional: true,
  disabledCommands: ['AUTH'],
  logger: false,
  onMailFrom(address, session, callback) {
    // Nothing travels in clear: STARTTLS first.
    if (!session.secure) {
      const err = new Error('530 Must issue a STARTTLS command first');
      err.responseCode = 530;
      return callback(err);
    }
    callback();
  },
  onData(stream, session, callback) {
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => {
      fs.appendFileSync(SMTP_DATA, JSON.stringify({
        from: session.envelope.mailFrom && session.envelope.mailFrom.address,
        to: session.envelope.rcptTo.map((r) => r.address),
        secure: session.secure,
        raw: Buffer.concat(chunks).toString('utf8'),
      }) + '\n');
      callback(null, 'accepté');
    });
  },
});
server.on('error', (e) => console.error(e.message));
server.listen(Number(SMTP_PORT), '127.0.0.1');

// Passkeys on idbridge's sign-in pages (WebAuthn Level 2, no library). The button carries
// the server's options as JSON; binary fields travel base64url both ways, as webauthn-rs
// reads and writes them. The answer goes back in the hidden form beside the button.
(function () {
  'use strict';
  const button = document.getElementById('passkey-button');
  if (!button) return;
  if (!window.PublicKeyCredential || !navigator.credentials) return; // stays hidden
  button.hidden = false;
  const decode = (text) => {
    const base64 = text.replace(/-/g, '+').replace(/_/g, '/');
    const padded = base64 + '==='.slice((base64.length + 3) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  };
  const encode = (buffer) => {
    let text = '';
    for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  };
  const ids = (list) => (list || []).forEach((c) => { c.id = decode(c.id); });
  // A credential as webauthn-rs reads it: the ceremony's own response fields, base64url.
  const answerOf = (c, fields) => {
    const response = {};
    for (const field of fields) response[field] = c.response[field] ? encode(c.response[field]) : null;
    return { id: c.id, rawId: encode(c.rawId), type: c.type, extensions: c.getClientExtensionResults(), response };
  };
  button.addEventListener('click', async () => {
    const form = document.getElementById('passkey-form');
    const options = JSON.parse(button.dataset.options).publicKey;
    options.challenge = decode(options.challenge);
    const status = document.getElementById('passkey-status');
    try {
      let answer;
      if (button.dataset.ceremony === 'create') {
        options.user.id = decode(options.user.id);
        ids(options.excludeCredentials);
        const c = await navigator.credentials.create({ publicKey: options });
        answer = answerOf(c, ['attestationObject', 'clientDataJSON']);
        answer.response.transports = c.response.getTransports ? c.response.getTransports() : [];
      } else {
        ids(options.allowCredentials);
        const c = await navigator.credentials.get({ publicKey: options });
        answer = answerOf(c, ['authenticatorData', 'clientDataJSON', 'signature', 'userHandle']);
      }
      form.querySelector('input[name=passkey]').value = JSON.stringify(answer);
      form.submit();
    } catch (error) {
      status.textContent = 'The passkey did not answer (' + error.name + '). Try again, or use a code.';
    }
  });
})();

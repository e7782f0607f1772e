// Dashboard behaviour on top of htmx: CSRF header, the shared dialog, confirmations, toasts,
// relative times and the streaming image upload. Plain ES2020, no build step.
(() => {
  'use strict';
  const csrfToken = document.querySelector('meta[name="csrf-token"]')?.getAttribute('content') ?? '';
  const dialog = /** @type {HTMLDialogElement | null} */ (document.getElementById('dialog'));
  const dialogBody = document.getElementById('dialog-body');
  const toasts = document.getElementById('toasts');

  /** Every state-changing request carries the session's CSRF token. */
  document.addEventListener('htmx:configRequest', (event) => {
    event.detail.headers['X-CSRF-Token'] = csrfToken;
  });

  function toast(message, kind = 'info') {
    if (!toasts) return;
    const item = document.createElement('p');
    item.className = `toast toast-${kind}`;
    item.textContent = message;
    if (kind === 'error') item.setAttribute('role', 'alert');
    toasts.append(item);
    setTimeout(() => item.remove(), kind === 'error' ? 12000 : 5000);
  }

  function messageOf(xhr) {
    try {
      return JSON.parse(xhr.responseText).message || `HTTP ${xhr.status}`;
    } catch {
      return xhr.status ? `HTTP ${xhr.status}` : 'the server did not answer';
    }
  }

  let opener = null;
  function openDialog() {
    if (!dialog || dialog.open) return;
    opener = document.activeElement;
    dialog.showModal();
    const first = dialog.querySelector('[autofocus], select, input:not([type=hidden]), button[type=submit]');
    first?.focus();
  }
  function closeDialog() {
    if (!dialog?.open) return;
    dialog.close();
  }
  dialog?.addEventListener('close', () => {
    if (dialogBody) dialogBody.innerHTML = '';
    if (opener && document.contains(opener)) opener.focus();
    opener = null;
  });

  document.addEventListener('htmx:afterSwap', (event) => {
    if (event.detail.target === dialogBody) {
      htmx.process(dialogBody);
      openDialog();
    }
  });

  document.addEventListener('click', (event) => {
    const target = /** @type {Element} */ (event.target);
    if (target.closest('[data-close-dialog]')) closeDialog();
  });

  /** After a request: a toast on success (and the dialog closes), the server's sentence on failure. */
  document.addEventListener('htmx:afterRequest', (event) => {
    const element = event.detail.elt;
    const xhr = event.detail.xhr;
    // A page's poll says nothing: a server restarting must not toast every few seconds.
    if (element.hasAttribute('data-poll')) return;
    if (event.detail.target === dialogBody) {
      if (!event.detail.successful) toast(messageOf(xhr), 'error');
      return;
    }
    const form = element.closest('form');
    const slot = form?.querySelector('[data-dialog-error]');
    if (event.detail.successful) {
      const message = element.getAttribute('data-toast') || form?.getAttribute('data-toast');
      if (message) toast(message, 'ok');
      if (form?.hasAttribute('data-close-dialog-on-success')) closeDialog();
      // A form that stays on the page (Add a rule) starts afresh, its last refusal gone.
      if (slot) slot.hidden = true;
      if (form?.hasAttribute('data-reset-on-success')) form.reset();
      return;
    }
    if (slot) {
      slot.textContent = messageOf(xhr);
      slot.hidden = false;
    } else {
      toast(messageOf(xhr), 'error');
    }
  });

  /**
   * hx-confirm questions use the page's own dialog (keyboard and screen-reader friendly), its
   * buttons named by data-confirm-yes and data-confirm-no where "Yes" would be unclear. The
   * confirmed request is sent with fetch rather than through the button: a live update may have
   * redrawn the button's row while the question was open, and htmx ignores detached elements.
   */
  document.addEventListener('htmx:confirm', (event) => {
    const { question, verb, path, elt } = event.detail;
    if (!question || !dialog || !dialogBody) return;
    event.preventDefault();
    dialogBody.innerHTML = '';
    const title = document.createElement('h2');
    title.id = 'dialog-title';
    title.textContent = 'Please confirm';
    const text = document.createElement('p');
    text.textContent = question;
    const actions = document.createElement('div');
    actions.className = 'dialog-actions';
    const no = document.createElement('button');
    no.type = 'button';
    no.textContent = elt.getAttribute('data-confirm-no') || 'No, keep it';
    no.setAttribute('data-close-dialog', '');
    const yes = document.createElement('button');
    yes.type = 'button';
    yes.className = 'button-danger';
    yes.textContent = elt.getAttribute('data-confirm-yes') || 'Yes';
    const done = elt.getAttribute('data-toast');
    yes.addEventListener('click', async () => {
      closeDialog();
      try {
        const response = await fetch(path, { method: verb.toUpperCase(), headers: { 'X-CSRF-Token': csrfToken } });
        if (response.ok) {
          if (done) toast(done, 'ok');
        } else {
          const body = await response.json().catch(() => ({}));
          toast(body.message || `HTTP ${response.status}`, 'error');
        }
      } catch {
        toast('the server did not answer', 'error');
      }
    });
    actions.append(no, yes);
    dialogBody.append(title, text, actions);
    openDialog();
    no.focus();
  });

  /** The Deploy dialog shows the size and sha256 of whichever image is chosen. */
  document.addEventListener('change', (event) => {
    const select = event.target;
    if (!(select instanceof HTMLSelectElement) || !select.hasAttribute('data-image-facts')) return;
    const option = select.selectedOptions[0];
    const form = select.closest('form');
    if (!option || !form) return;
    form.querySelector('[data-fact="size"]').textContent = option.dataset.sizeText ?? '';
    form.querySelector('[data-fact="sha256"]').textContent = option.dataset.sha256 ?? '';
  });

  /**
   * A checkbox with data-enables="id id…" (Wait for first boot, Confirm first boot) enables those
   * controls while it is ticked: a disabled control is not sent, so its value counts only then.
   */
  function syncEnables(box) {
    for (const id of (box.getAttribute('data-enables') ?? '').split(/\s+/).filter(Boolean)) {
      const control = document.getElementById(id);
      if (control) control.disabled = !box.checked;
    }
  }
  document.addEventListener('change', (event) => {
    const box = event.target;
    if (box instanceof HTMLInputElement && box.hasAttribute('data-enables')) syncEnables(box);
  });
  // A form put back to its defaults (after "Add rule") puts its dependent controls back too, and
  // so does one the browser filled in again (history) or htmx just put on the page (the dialog).
  const syncAll = (root) => root.querySelectorAll('input[data-enables]').forEach(syncEnables);
  document.addEventListener('reset', (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement) setTimeout(() => syncAll(form));
  });
  syncAll(document);
  document.addEventListener('htmx:load', (event) => syncAll(event.detail.elt));

  /** "12 s ago" stays true without a reload. */
  function relative(iso) {
    const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return `${Math.floor(seconds / 86400)} d ago`;
  }
  setInterval(() => {
    for (const time of document.querySelectorAll('time[data-relative]')) time.textContent = relative(time.getAttribute('datetime'));
  }, 5000);

  /** Times are sent in UTC; show them in the operator's own time zone. */
  const pad = (n) => String(n).padStart(2, '0');
  function localize(root) {
    for (const time of root.querySelectorAll('time[data-local]')) {
      const date = new Date(time.getAttribute('datetime'));
      if (Number.isNaN(date.getTime())) continue;
      time.title = time.textContent;
      time.textContent = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
      time.removeAttribute('data-local');
    }
  }
  localize(document);
  document.addEventListener('htmx:load', (event) => localize(event.detail.elt));

  // The browser's copy of formatBytes in src/shared/format.ts (the page loads no modules):
  // keep the two alike so that live updates read like the server-rendered page.
  function formatBytes(bytes) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
  }

  /** Image upload: the file streams as the request body (the browser reads it from disk). */
  const upload = document.querySelector('form[data-upload-image]');
  if (upload) {
    const file = upload.querySelector('input[name=file]');
    const bmap = upload.querySelector('input[name=bmap]');
    const name = upload.querySelector('input[name=name]');
    const makeDefault = upload.querySelector('input[name=default]');
    const progressBox = upload.querySelector('.upload-progress');
    const bar = upload.querySelector('progress');
    const status = upload.querySelector('[data-upload-status]');
    const submit = upload.querySelector('button[type=submit]');
    file.addEventListener('change', () => {
      const chosen = file.files?.[0];
      if (chosen && !name.value) {
        name.value = chosen.name.replace(/\.(gz|xz|zst|bz2|lz4|zip)$/i, '').replace(/\.img$/i, '').replace(/[^A-Za-z0-9._+-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
      }
    });
    upload.addEventListener('submit', async (event) => {
      event.preventDefault();
      const chosen = file.files?.[0];
      if (!chosen) return;
      const query = new URLSearchParams({ name: name.value, origin: chosen.name });
      if (makeDefault.checked) query.set('default', 'true');
      const map = bmap?.files?.[0];
      if (map) {
        // The bmap goes first; the image upload names it.
        const response = await fetch('/api/images/bmaps', { method: 'POST', headers: { 'X-CSRF-Token': csrfToken, 'Content-Type': 'application/xml' }, body: map });
        const body = await response.json().catch(() => ({}));
        if (!response.ok) {
          toast(`Image not added: ${body.message || `HTTP ${response.status}`}`, 'error');
          return;
        }
        query.set('bmap', body.bmap);
      }
      const xhr = new XMLHttpRequest();
      xhr.open('POST', `/api/images?${query}`);
      xhr.setRequestHeader('X-CSRF-Token', csrfToken);
      xhr.setRequestHeader('Content-Type', 'application/octet-stream');
      const started = Date.now();
      progressBox.hidden = false;
      submit.disabled = true;
      xhr.upload.addEventListener('progress', (progress) => {
        if (!progress.lengthComputable) return;
        bar.value = (progress.loaded / progress.total) * 100;
        const seconds = (Date.now() - started) / 1000;
        const speed = seconds > 0 ? ` · ${(progress.loaded / seconds / 1e6).toFixed(1)} MB/s` : '';
        status.textContent = `${formatBytes(progress.loaded)} of ${formatBytes(progress.total)}${speed}`;
      });
      xhr.addEventListener('loadend', () => {
        submit.disabled = false;
        if (xhr.status === 201) {
          status.textContent = `Added ${name.value}.`;
          toast(`Image ${name.value} added`, 'ok');
          upload.reset();
        } else {
          status.textContent = `Not added: ${messageOf(xhr)}`;
          toast(`Image not added: ${messageOf(xhr)}`, 'error');
        }
      });
      xhr.send(chosen);
    });
  }
})();

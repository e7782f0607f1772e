import { html, type SafeHtml } from '../html.js';

export type PageName = 'devices' | 'images' | 'backups' | 'history' | 'netboot' | 'records' | 'rules' | 'stations';

export interface PageOptions {
  title: string;
  page: PageName;
  csrfToken: string;
  assetVersion: string;
  /** Other stations may share this database (PostgreSQL): the nav offers the Stations page. */
  sharedDatabase: boolean;
}

const NAV: Array<[PageName, string, string]> = [
  ['devices', '/', 'Devices'],
  ['rules', '/rules', 'Rules'],
  ['images', '/images', 'Images'],
  ['backups', '/backups', 'Backups'],
  ['records', '/records', 'Records'],
  ['history', '/history', 'History'],
  ['netboot', '/netboot', 'Netboot'],
  ['stations', '/stations', 'Stations'],
];

/**
 * htmx's default 20 ms settle delay leaves buttons in a freshly swapped row inert for that long;
 * rows are redrawn every second during a job, so the dashboard settles at once.
 */
function head(title: string, assetVersion: string, csrfToken?: string): SafeHtml {
  return html`<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${title} · cm4-provisioning</title>
${csrfToken ? html`<meta name="csrf-token" content="${csrfToken}">` : ''}
<meta name="htmx-config" content='{"defaultSettleDelay":0}'>
<link rel="stylesheet" href="/assets/app.css?v=${assetVersion}">
<script src="/assets/htmx.min.js?v=${assetVersion}" defer></script>
<script src="/assets/htmx-sse.js?v=${assetVersion}" defer></script>
<script src="/assets/app.js?v=${assetVersion}" defer></script>`;
}

/** The page shell: skip link, navigation, main content, toast area and the one shared dialog. */
export function page(options: PageOptions, content: SafeHtml): SafeHtml {
  return html`<!doctype html>
<html lang="en">
<head>
${head(options.title, options.assetVersion, options.csrfToken)}
</head>
<body>
<a class="skip-link" href="#main">Skip to content</a>
<header class="topbar">
  <a class="brand" href="/">cm4-provisioning</a>
  <nav aria-label="Main">
    <ul>
      ${NAV.filter(([name]) => name !== 'stations' || options.sharedDatabase).map(([name, href, label]) => html`<li><a href="${href}"${name === options.page ? html` aria-current="page"` : ''}>${label}</a></li>`)}
    </ul>
  </nav>
  <form class="logout" method="post" action="/logout">
    <input type="hidden" name="_csrf" value="${options.csrfToken}">
    <button type="submit" class="button-quiet">Log out</button>
  </form>
</header>
<main id="main" tabindex="-1">
${content}
</main>
<div id="toasts" class="toasts" role="status" aria-live="polite"></div>
<dialog id="dialog" aria-labelledby="dialog-title">
  <div id="dialog-body"></div>
</dialog>
</body>
</html>`;
}

export interface LoginOptions {
  assetVersion: string;
  next: string;
  /** What is wrong with the password given (marks the field invalid). */
  error?: string;
  /** Why no password was checked this time (too many attempts, server busy). */
  notice?: string;
  /** No password has been set yet: say how to set one instead of showing a form. */
  noPassword?: boolean;
}

export function loginPage(options: LoginOptions): SafeHtml {
  const message = options.error ?? options.notice;
  return html`<!doctype html>
<html lang="en">
<head>
${head('Log in', options.assetVersion)}
</head>
<body class="login-body">
<main id="main" class="login">
  <h1>cm4-provisioning</h1>
  ${options.noPassword
    ? html`<div class="notice" role="alert">
        <h2>No admin password yet</h2>
        <p>Set one on the server, then reload this page:</p>
        <pre><code>npx cm4prov admin password</code></pre>
        <p>or start the server once with <code>CM4PROV_ADMIN_PASSWORD</code> set.</p>
      </div>`
    : html`<form method="post" action="/login" class="login-form">
        <input type="hidden" name="next" value="${options.next}">
        <label for="password">Admin password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required autofocus
          ${options.error ? html`aria-invalid="true"` : ''} ${message ? html`aria-describedby="login-error"` : ''}>
        ${message ? html`<p id="login-error" class="form-error" role="alert">${message}</p>` : ''}
        <button type="submit" class="button-primary">Log in</button>
      </form>`}
</main>
</body>
</html>`;
}

/**
 * What a browser is shown when this station cannot answer (its database is out of reach): the
 * sentence, and a reload every few seconds, so the page comes back by itself when the station
 * does. No assets: serving them may be what fails.
 */
export function unavailablePage(message: string, retrySeconds: number): SafeHtml {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="${retrySeconds}">
<title>Station unavailable · cm4-provisioning</title>
</head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
<main>
  <h1>This station cannot answer right now</h1>
  <p role="alert">${message.replace(/^the server/, 'The server')}.</p>
  <p>Devices are told to try again, so none is given a wrong action. This page reloads every ${retrySeconds} seconds and shows the dashboard again once the station is back.</p>
</main>
</body>
</html>`;
}

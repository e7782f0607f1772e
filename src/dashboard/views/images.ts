import type { ImageView, ImportProgress } from '../../images/library.js';
import { bytes, timestamp } from '../format.js';
import { html, type SafeHtml } from '../html.js';

/** What a device must write, and the state of the compressed copy it is sent as. */
function mapped(image: ImageView): SafeHtml | string {
  const map = image.block_map;
  if (!map) return 'mapping…';
  const c = map.compression;
  const zstd = c.state === 'ready' ? `zstd ${bytes(c.bytes)}` : c.state === 'none' ? 'sent plain' : `compressing ${c.done}/${c.total}`;
  return html`${bytes(map.mapped_bytes)}<span class="sub">${map.chunks} chunks${map.source === 'bmap' ? ' (bmap)' : ''} · ${zstd}</span>`;
}

/** A file deleted or changed behind the server's back: said where the name is, with why. */
function broken(image: ImageView): SafeHtml | string {
  if (!image.broken) return '';
  return html` <span class="badge badge-failed">broken</span><span class="error-text">Not deployable: ${image.broken}.</span>`;
}

/** Stations still without a whole, intact copy (several stations on one PostgreSQL): "on line-b: fetching 45%". */
function copies(image: ImageView): SafeHtml | string {
  const notes = image.copies
    .filter((copy) => copy.state !== 'complete' || copy.broken)
    .map((copy) => {
      const damaged = copy.broken ? 'copy damaged, ' : '';
      if (copy.state === 'complete') return `on ${copy.station}: copy damaged, not deployed there`;
      if (copy.state === 'failed') return `on ${copy.station}: ${damaged}fetch failed, retrying`;
      return `on ${copy.station}: ${damaged}fetching ${copy.bytes_total ? Math.floor((100 * copy.bytes_done) / copy.bytes_total) : 0}%`;
    });
  const why = image.copies.find((copy) => copy.broken)?.broken ?? image.copies.find((copy) => copy.error)?.error ?? '';
  return notes.length ? html`<span class="sub" title="${why}">${notes.join(' · ')}</span>` : '';
}

export function imageRows(images: ImageView[], imports: ImportProgress[]): SafeHtml {
  const rows = images.map(
    (image) => html`<tr id="image-${image.id}">
  <th scope="row" data-label="Name">${image.name}${image.default ? html` <span class="badge badge-default">default</span>` : ''}${broken(image)}${copies(image)}</th>
  <td data-label="Size" class="nowrap">${bytes(image.size)}</td>
  <td data-label="Mapped">${mapped(image)}</td>
  <td data-label="sha256"><code class="hash" title="${image.sha256}">${image.sha256}</code></td>
  <td data-label="From">${image.source === 'golden' ? 'golden.img' : image.source === 'backup' ? image.origin : image.origin ?? 'upload'}</td>
  <td data-label="Added">${timestamp(image.created_at)}</td>
  <td data-label="In use">${image.in_use ? 'yes' : 'no'}</td>
  <td class="actions">
    ${image.default ? '' : html`<button type="button" hx-post="/api/images/${image.name}/default" hx-swap="none"
      data-toast="${image.name} is now the default">Make default</button>`}
    <button type="button" id="delete-image-${image.id}" class="button-quiet" hx-delete="/api/images/${image.name}" hx-swap="none" ${image.in_use ? 'disabled title="A deploy is using it"' : ''}
      hx-confirm="Delete image ${image.name}? Devices can no longer be deployed with it." data-toast="Image ${image.name} deleted">Delete</button>
  </td>
</tr>`,
  );
  const importing = imports.map(
    (item) => html`<tr class="importing">
  <th scope="row" data-label="Name">${item.name}</th>
  <td colspan="7">Importing ${item.origin}: ${bytes(item.bytes_done)}${item.bytes_total ? html` of ${bytes(item.bytes_total)}` : ''}</td>
</tr>`,
  );
  return html`${rows}${importing}`;
}

export function imagesPage(images: ImageView[], imports: ImportProgress[]): SafeHtml {
  return html`<h1>Images</h1>
<div hx-ext="sse" sse-connect="/dashboard/events?view=images" sse-swap="update" hx-swap="none" hidden></div>
<section aria-labelledby="library-heading">
  <h2 id="library-heading">Library</h2>
  <div class="table-wrap">
    <table class="images">
      <thead><tr><th scope="col">Name</th><th scope="col">Size</th><th scope="col">Mapped</th><th scope="col">sha256</th><th scope="col">From</th>
        <th scope="col">Added</th><th scope="col">In use</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody id="image-rows">${imageRows(images, imports)}</tbody>
    </table>
  </div>
  <p class="hint">Images never change once added; one whose stored file is deleted or changed behind the server's back is marked
    broken and not deployed. <code>golden.img</code> in the server's data folder is published as
    <strong>golden</strong> and re-imported whenever the file is replaced. Devices get only the mapped chunks, zstd-compressed,
    and check each one after writing it.</p>
</section>
<section aria-labelledby="upload-heading">
  <h2 id="upload-heading">Upload an image</h2>
  <form id="image-upload" class="upload-form form-grid" data-upload-image>
    <label for="upload-file">Image file</label>
    <input id="upload-file" name="file" type="file" required aria-describedby="upload-file-hint">
    <p id="upload-file-hint" class="hint">.img, .img.gz, .img.xz, .img.zst, .img.bz2, .img.lz4, or a .zip holding one image.</p>
    <label for="upload-bmap">Block map</label>
    <input id="upload-bmap" name="bmap" type="file" accept=".bmap,.xml" aria-describedby="upload-bmap-hint">
    <p id="upload-bmap-hint" class="hint">Optional: bmaptool's .bmap; else empty blocks are found by reading the image.</p>
    <label for="upload-name">Name</label>
    <input id="upload-name" name="name" required pattern="[A-Za-z0-9][A-Za-z0-9._+\\-]{0,127}"
      aria-describedby="upload-name-hint" autocomplete="off">
    <p id="upload-name-hint" class="hint">Letters, digits, <code>. _ + -</code>; filled in from the file name.</p>
    <div class="form-grid-control checkbox-line">
      <input id="upload-default" name="default" type="checkbox"><label for="upload-default">Make it the default for Deploy</label>
    </div>
    <div class="form-grid-control"><button type="submit" class="button-primary">Upload</button></div>
    <div class="upload-progress" hidden>
      <progress id="upload-progress" max="100" value="0" aria-label="Upload progress"></progress>
      <span data-upload-status aria-live="polite"></span>
    </div>
  </form>
</section>`;
}

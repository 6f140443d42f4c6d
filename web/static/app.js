// IOS web UI: keys in the browser, signing what the gateway builds,
// uploads with progress, private objects sealed and opened here, and live
// updates from the gateway's server-sent events. Plain JavaScript, no build.
"use strict";

const IOS = (() => {
  const C = IosCrypto;
  const KEY = "ios.key";
  const $ = (sel, root = document) => root.querySelector(sel);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const csrf = () => $("meta[name=csrf]").content;

  // ---------- messages ----------
  let toastTimer = null;
  function toast(msg, error = false) {
    const t = $("#toast");
    t.textContent = msg;
    t.className = error ? "show error" : "show";
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.className = ""; }, error ? 12000 : 5000);
  }

  // ---------- keys ----------
  let keyPromise = null;
  function setAddressCookie(addr) {
    document.cookie = addr
      ? "ios_address=" + addr + "; path=/; samesite=strict; max-age=31536000"
      : "ios_address=; path=/; samesite=strict; max-age=0";
  }
  async function key() {
    const seed = localStorage.getItem(KEY);
    if (!seed) throw new Error("This browser holds no key: create or import one in the wallet.");
    if (!keyPromise) keyPromise = C.keyFromSeed(C.unhex(seed));
    return keyPromise;
  }
  async function saveSeed(seed) {
    const k = await C.keyFromSeed(seed);
    localStorage.setItem(KEY, C.hex(seed));
    keyPromise = Promise.resolve(k);
    setAddressCookie(k.address);
    return k;
  }

  // ---------- the API ----------
  async function api(method, path, body) {
    const init = { method, headers: { "x-csrf-token": csrf() }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
    if (!r.ok) {
      throw new Error(json && json.error ? json.error.message + " (" + json.error.code + ")" : "HTTP " + r.status + " from " + path);
    }
    return json;
  }

  // ---------- signing ----------
  function confirmSign(built, step) {
    const d = $("#sign");
    $("#sign-summary").textContent = built.summary;
    $("#sign-detail").textContent = (step ? step + " · " : "") + "shard " + built.shard + " · nonce " + built.nonce +
      " · fee " + built.fee + " base units · id " + built.signing_hash.slice(0, 16) + "…";
    return new Promise((resolve) => {
      const done = (ok) => { d.close(); $("#sign-ok").onclick = null; $("#sign-cancel").onclick = null; resolve(ok); };
      $("#sign-ok").onclick = () => done(true);
      $("#sign-cancel").onclick = () => done(false);
      d.showModal();
    });
  }
  async function waitTx(id) {
    for (let i = 0; i < 240; i++) {
      const s = await api("GET", "/api/v1/tx/" + id);
      if (s.state === "finalized") return s;
      if (s.state === "failed") throw new Error("the chain refused it: " + (s.error ? s.error.message : "failed"));
      await sleep(400);
    }
    throw new Error("transaction " + id + " was not finalized within 2 minutes");
  }
  // Builds `call` at the gateway, shows its summary, signs it here, submits
  // it and waits for its block. Returns {id, atomix, status}.
  async function send(call, step) {
    const k = await key();
    const built = await api("POST", "/api/v1/tx/build", { sender: k.address, call });
    if (!(await confirmSign(built, step))) throw new Error("Not signed.");
    const sig = await C.sign(k, C.unhex(built.signing_hash));
    const sub = await api("POST", "/api/v1/tx", { tx: built.tx, signature: C.hex(sig) });
    toast("Signed and sent; waiting for its block…");
    const status = await waitTx(sub.id);
    return { id: sub.id, atomix: built.atomix, status };
  }
  const market = (call, step) => send({ type: "market", call }, step);

  // ---------- storage ----------
  function progressOf(form) {
    const bar = form && $(".progress progress", form), label = form && $(".progress span", form);
    return (fraction, text) => {
      if (!bar) return;
      bar.hidden = false;
      bar.value = Math.round(100 * fraction);
      label.textContent = text;
    };
  }
  function uploadBytes(bytes, progress) {
    return new Promise((resolve, reject) => {
      const x = new XMLHttpRequest();
      x.open("POST", "/api/v1/store/uploads");
      x.setRequestHeader("content-type", "application/octet-stream");
      x.setRequestHeader("x-csrf-token", csrf());
      x.upload.onprogress = (e) => { if (e.lengthComputable) progress(0.6 * e.loaded / e.total, "uploading " + Math.round(100 * e.loaded / e.total) + "%"); };
      x.onload = () => {
        let j = null;
        try { j = JSON.parse(x.responseText); } catch (_) { /* not JSON */ }
        if (x.status === 200 && j) resolve(j);
        else reject(new Error(j && j.error ? j.error.message : "upload failed: HTTP " + x.status));
      };
      x.onerror = () => reject(new Error("the upload was cut off"));
      x.send(bytes);
    });
  }
  // Stores `bytes` in HUDS: upload, the deal (signed here), then waits until
  // the providers hold its fragments. Returns the content id.
  async function store(bytes, meta, epochs, progress, step) {
    const staged = await uploadBytes(bytes, progress);
    progress(0.65, "encoded into " + staged.segments + " segment(s); sign the storage deal");
    await send({ type: "store_deal", content: staged.content, epochs, meta }, step);
    for (let i = 0; i < 150; i++) {
      const o = await api("GET", "/api/v1/store/objects/" + staged.content);
      progress(0.7 + 0.3 * (o.receipted / Math.max(1, o.fragments)), "on providers: " + o.receipted + "/" + o.fragments + " fragments");
      if (o.receipted >= o.fragments) break;
      await sleep(400);
    }
    return staged.content;
  }
  async function fileBytes(input) {
    const f = input.files[0];
    if (!f) return null;
    return { name: f.name, mime: f.type || "application/octet-stream", bytes: new Uint8Array(await f.arrayBuffer()) };
  }
  function download(bytes, name, mime) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([bytes], { type: mime || "application/octet-stream" }));
    a.download = name || "download";
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }
  async function openPrivate(content, name) {
    const k = await key();
    const r = await fetch("/api/v1/store/objects/" + content + "/content");
    if (!r.ok) throw new Error("the object cannot be read now (HTTP " + r.status + ")");
    const plain = await C.decryptWith(new Uint8Array(await r.arrayBuffer()), k);
    download(plain, name || content.slice(0, 12));
    return plain;
  }

  // ---------- amounts and forms ----------
  function units(s) {
    const m = /^(\d+)(?:\.(\d{1,8}))?$/.exec(String(s).trim());
    if (!m) throw new Error("an amount is like 12 or 12.5 (at most 8 decimals), not " + JSON.stringify(s));
    return (BigInt(m[1]) * 100000000n + BigInt((m[2] || "").padEnd(8, "0"))).toString();
  }
  const val = (f, name) => f.elements[name].value;
  const lines = (s) => s.split("\n").map((x) => x.trim()).filter(Boolean);
  const reload = () => location.reload();
  const saved = (kind, order) => {
    const s = localStorage.getItem("ios." + kind + "." + order);
    if (!s) throw new Error("this browser does not hold the " + kind + " it committed for this order (it is kept where it was made)");
    return JSON.parse(s);
  };

  async function writeListingDoc(f, progress) {
    const description = val(f, "description");
    const image = await fileBytes(f.elements.image);
    if (f.dataset.doc && !image && description === f.dataset.description) return f.dataset.doc;
    const images = [];
    if (image) {
      images.push(await store(image.bytes, { name: image.name, mime: image.mime, public: true, tags: ["listing-image"], description: "" },
        1000, progress, "image"));
    }
    const doc = new TextEncoder().encode(JSON.stringify({ description, images }));
    return store(doc, { name: val(f, "title"), mime: "application/vnd.ios.listing+json", public: true, tags: ["listing"], description },
      1000, progress, "listing document");
  }
  const terms = (f, doc) => ({ title: val(f, "title"), category: val(f, "category"), price: units(val(f, "price")),
    delivery_blocks: Number(val(f, "delivery_blocks")), doc });

  const HANDLERS = {
    async transfer(f) {
      await send({ type: "transfer", to: val(f, "to").trim(), amount: units(val(f, "amount")) });
      reload();
    },
    async create_listing(f) {
      const doc = await writeListingDoc(f, progressOf(f));
      const r = await market({ type: "create_listing", ...terms(f, doc) }, "listing");
      location.href = "/listings/" + r.id;
    },
    async update_listing(f) {
      const doc = await writeListingDoc(f, progressOf(f));
      await market({ type: "update_listing", listing: f.dataset.listing, terms: terms(f, doc) });
      location.href = "/listings/" + f.dataset.listing;
    },
    async set_listing_status(f) { await market({ type: "set_listing_status", listing: f.dataset.listing, status: f.dataset.status }); reload(); },
    async place_order(f) {
      const r = await market({ type: "place_order", listing: f.dataset.listing, price: f.dataset.price });
      location.href = "/orders/" + (r.atomix || r.id);
    },
    async accept(f) { await market({ type: "accept", order: f.dataset.order }); reload(); },
    async decline(f) { await market({ type: "decline", order: f.dataset.order }); reload(); },
    async cancel(f) { await market({ type: "cancel", order: f.dataset.order }); reload(); },
    async confirm(f) { await market({ type: "confirm", order: f.dataset.order }); reload(); },
    async deliver(f) {
      const k = await key();
      const file = await fileBytes(f.elements.file);
      if (!file) throw new Error("choose the file to deliver");
      const progress = progressOf(f);
      progress(0.02, "encrypting to the buyer");
      const sealed = await C.encryptFor(file.bytes, [f.dataset.buyer, k.address]);
      const content = await store(sealed, { name: file.name, mime: file.mime, public: false, tags: [], description: "" },
        1000, progress, "delivery");
      await market({ type: "deliver", order: f.dataset.order, delivery: content }, "deliver");
      reload();
    },
    async dispute(f) {
      await market({ type: "dispute", order: f.dataset.order, case: { statement: val(f, "statement"), evidence: lines(val(f, "evidence")) } });
      reload();
    },
    async answer(f) {
      await market({ type: "answer", order: f.dataset.order, case: { statement: val(f, "statement"), evidence: lines(val(f, "evidence")) } });
      reload();
    },
    async commit_rating(f) {
      const k = await key();
      const scores = {};
      for (const n of ["overall", "quality", "communication", "timeliness"]) scores[n] = Number(val(f, n));
      const comment = val(f, "comment");
      const salt = C.random(32);
      const commitment = C.hex(C.ratingCommitment(f.dataset.order, k.address, scores, comment, salt));
      localStorage.setItem("ios.rating." + f.dataset.order, JSON.stringify({ scores, comment, salt: C.hex(salt) }));
      await market({ type: "commit_rating", order: f.dataset.order, commitment });
      reload();
    },
    async reveal_rating(f) {
      const r = saved("rating", f.dataset.order);
      await market({ type: "reveal_rating", order: f.dataset.order, scores: r.scores, comment: r.comment, salt: r.salt });
      reload();
    },
    async respond(f) { await market({ type: "respond", order: f.dataset.order, text: val(f, "text") }); reload(); },
    async join_jury_pool() { await market({ type: "join_jury_pool" }); reload(); },
    async leave_jury_pool() { await market({ type: "leave_jury_pool" }); reload(); },
    async jury_commit(f) {
      const k = await key();
      const share = Math.round(Number(val(f, "share")) * 10000);
      const salt = C.random(32);
      const commitment = C.hex(C.voteCommitment(f.dataset.order, k.address, Number(f.dataset.round), share, salt));
      localStorage.setItem("ios.vote." + f.dataset.order, JSON.stringify({ share, salt: C.hex(salt) }));
      await market({ type: "jury_commit", order: f.dataset.order, commitment });
      reload();
    },
    async jury_reveal(f) {
      const v = saved("vote", f.dataset.order);
      await market({ type: "jury_reveal", order: f.dataset.order, share: v.share, salt: v.salt });
      reload();
    },
    async store(f) {
      const k = await key();
      const file = await fileBytes(f.elements.file);
      if (!file) throw new Error("choose a file");
      const progress = progressOf(f);
      const pub = f.elements.public.checked;
      let bytes = file.bytes;
      if (!pub) {
        progress(0.02, "encrypting");
        bytes = await C.encryptFor(bytes, [k.address, ...lines(val(f, "readers"))]);
      }
      const tags = val(f, "tags").split(/\s+/).filter(Boolean);
      await store(bytes, { name: file.name, mime: file.mime, public: pub, tags, description: val(f, "description") },
        Number(val(f, "epochs")), progress);
      reload();
    },
  };

  document.addEventListener("submit", async (ev) => {
    const f = ev.target.closest("form.call");
    if (!f) return;
    ev.preventDefault();
    const handler = HANDLERS[f.dataset.kind];
    const button = $("button[type=submit]", f);
    if (button) button.disabled = true;
    try {
      await handler(f);
    } catch (e) {
      toast(e.message || String(e), true);
    } finally {
      if (button) button.disabled = false;
    }
  });

  // ---------- wallet ----------
  async function wallet() {
    const show = (k) => { $("#key-address").textContent = k ? k.address : "No key in this browser."; };
    $("#key-new").onclick = async () => {
      if (localStorage.getItem(KEY) && !confirm("Replace the key this browser holds? Export a backup of it first.")) return;
      const k = await C.generateKey();
      await saveSeed(k.seed);
      reload();
    };
    $("#key-export").onclick = async () => {
      const k = await key().catch((e) => { toast(e.message, true); return null; });
      if (!k) return;
      download(new TextEncoder().encode(JSON.stringify({ ios_key: 1, address: k.address, seed: C.hex(k.seed) }, null, 1)),
        "ios-key-" + k.address.slice(0, 12) + ".json", "application/json");
    };
    $("#key-import").onchange = async (ev) => {
      try {
        const j = JSON.parse(await ev.target.files[0].text());
        const k = await saveSeed(C.unhex(j.seed));
        if (j.address && j.address !== k.address) throw new Error("the backup's seed does not give its address");
        reload();
      } catch (e) { toast("Not a key backup: " + e.message, true); }
    };
    $("#key-forget").onclick = () => {
      if (!confirm("Forget this key? Without a backup its funds are gone.")) return;
      localStorage.removeItem(KEY);
      setAddressCookie(null);
      reload();
    };
    if (localStorage.getItem(KEY)) show(await key());
  }

  // ---------- live updates ----------
  function live() {
    if (!window.EventSource) return;
    const heights = {};
    const order = $("#order");
    const es = new EventSource("/api/v1/events");
    // Give the connection back when the page goes: a browser keeps only a
    // few connections per host, and a stream left to linger holds one.
    window.addEventListener("pagehide", () => es.close());
    es.addEventListener("commit", async (ev) => {
      const c = JSON.parse(ev.data);
      heights[c.shard] = c.height;
      $("#live").textContent = Object.keys(heights).sort().map((s) => (s === "0" ? "beacon " : "shard " + s + " ") + "#" + heights[s]).join(" · ");
      const row = $("#shards tr[data-shard='" + c.shard + "'] td.height a");
      if (row) row.textContent = c.height;
      if (order && Number(order.dataset.shard) === c.shard && !$("#sign").open) {
        const now = await api("GET", "/api/v1/market/orders/" + order.dataset.id).catch(() => null);
        const before = JSON.parse($("#order-data").textContent);
        if (now && (now.state !== before.state || JSON.stringify(now.ratings) !== JSON.stringify(before.ratings))) reload();
      }
    });
  }

  async function listingImages() {
    for (const el of document.querySelectorAll("[data-listing-doc]")) {
      try {
        const r = await fetch("/api/v1/store/objects/" + el.dataset.listingDoc + "/content");
        const doc = await r.json();
        for (const cid of doc.images || []) {
          if (!/^[0-9a-f]{64}$/.test(cid)) continue;
          const img = document.createElement("img");
          img.className = "listing-image";
          img.alt = "listing image";
          img.src = "/api/v1/store/objects/" + cid + "/content";
          el.appendChild(img);
        }
      } catch (_) { el.textContent = "(the listing's images cannot be read now)"; }
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    // The address cookie follows the key this browser holds.
    // Reloaded once at most per tab: a browser that refuses the cookie must
    // not loop.
    const once = () => { if (!sessionStorage.getItem("ios.synced")) { sessionStorage.setItem("ios.synced", "1"); reload(); } };
    const seed = localStorage.getItem(KEY);
    if (seed) key().then((k) => { if (!document.cookie.includes("ios_address=" + k.address)) { setAddressCookie(k.address); once(); } });
    else if (document.cookie.includes("ios_address=ios1")) { setAddressCookie(null); once(); }
    if ($("#keys")) wallet();
    const form = $("#listing-form");
    if (form) form.dataset.description = val(form, "description");
    for (const b of document.querySelectorAll("#open-delivery, .open-private")) {
      b.onclick = () => openPrivate(b.dataset.content, b.dataset.name).then(() => toast("Decrypted in this browser.")).catch((e) => toast(e.message, true));
    }
    listingImages();
    live();
  });

  return { key, saveSeed, send, store, api, units, openPrivate };
})();

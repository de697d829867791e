// Manushya API reference: renders /v1/openapi.json (OpenAPI 2.0, as grpc-gateway's
// generator writes it) into the page. Every element is built with the DOM API and
// every text from the document is set as text, never parsed as HTML.
'use strict';

(() => {
  const SPEC_URL = '/v1/openapi.json';
  const METHODS = ['get', 'post', 'put', 'patch', 'delete'];
  // Nesting shown open by default; deeper levels stay folded.
  const OPEN_DEPTH = 1;
  const MAX_DEPTH = 8;
  const SAMPLE_ID = '0190a5f2-8c1e-7000-8000-000000000001';
  // Services in the order a reader meets them; others follow in document order.
  const SERVICE_ORDER = [
    'IdentityService', 'AuthService', 'SessionService', 'ApiKeyService', 'InvitationService',
    'SsoService', 'CredentialService', 'TenantService', 'MemoryService', 'EmbeddingService',
    'PolicyService', 'WebhookService', 'EventService', 'AuditService', 'UsageService',
    'RateLimitService', 'MonitoringService',
  ];

  let definitions = {};

  // el builds an element: el('a', {href: '#x', class: 'y'}, child, 'text', ...).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // inline renders `code` spans and drops Markdown link targets, keeping the text.
  function inline(text) {
    const cleaned = text
      .replace(/\[([^\]]+)\]\[[^\]]*\]/g, '$1')
      .replace(/\[([^\]]+)\]\([^)]*\)/g, '$1');
    const parts = cleaned.split('`');
    return parts.map((part, i) => (i % 2 === 1 ? el('code', null, part) : part));
  }

  // richText renders a proto comment: paragraphs split by blank lines, "- " lines
  // as lists, wrapped lines joined.
  function richText(text) {
    const box = el('div', {class: 'desc'});
    if (!text) return box;
    for (const block of text.trim().split(/\n\s*\n/)) {
      const lines = block.split('\n');
      if (lines.every((l) => /^\s*-\s/.test(l) || /^\s{2,}\S/.test(l))) {
        const list = el('ul');
        let current = null;
        for (const line of lines) {
          if (/^\s*-\s/.test(line)) {
            current = line.replace(/^\s*-\s+/, '');
            list.append(el('li'));
          } else {
            current += ' ' + line.trim();
          }
          list.lastChild.replaceChildren(...inline(current));
        }
        box.append(list);
      } else {
        box.append(el('p', null, inline(lines.map((l) => l.trim()).join(' '))));
      }
    }
    return box;
  }

  function refName(ref) {
    return ref.replace(/^#\/definitions\//, '');
  }

  // displayName turns a definition name such as "v1Identity" into "Identity".
  function displayName(name) {
    return name ? name.replace(/^(v\d+(alpha|beta)?\d*|rpc|protobuf|api)(?=[A-Z])/, '') : '';
  }

  // resolve follows a $ref; the property's own description wins over the
  // referenced type's, since it says what this field is for.
  function resolve(schema) {
    if (!schema || !schema.$ref) return {schema: schema || {}, name: ''};
    const name = refName(schema.$ref);
    return {schema: definitions[name] || {}, name};
  }

  // typeInfo describes a schema: its label, the object schema whose fields can be
  // listed under it, and its enum values.
  function typeInfo(schema) {
    const {schema: s, name} = resolve(schema);
    if (s.enum) return {label: displayName(name) || 'enum', enumValues: s.enum, name};
    if (s.type === 'array') {
      const item = typeInfo(s.items || {});
      return {...item, label: 'array of ' + item.label};
    }
    const props = s.properties && Object.keys(s.properties).length > 0;
    if (props) return {label: displayName(name) || 'object', child: s, name};
    if (s.additionalProperties && typeof s.additionalProperties === 'object' &&
        Object.keys(s.additionalProperties).length > 0 && name !== 'protobufAny') {
      const value = typeInfo(s.additionalProperties);
      return {...value, label: 'map of string to ' + value.label};
    }
    if (name === 'protobufAny') return {label: 'object with "@type"', name};
    if (s.type === 'object' || name) return {label: 'object (any JSON)', name};
    if (s.type === 'string') {
      switch (s.format) {
        case 'date-time': return {label: 'timestamp (RFC 3339 string)'};
        case 'int64': return {label: 'int64 (as a string)'};
        case 'uint64': return {label: 'uint64 (as a string)'};
        case 'byte': return {label: 'bytes (base64 string)'};
        default: return {label: s.format ? 'string (' + s.format + ')' : 'string'};
      }
    }
    if (s.type) return {label: s.format ? s.type + ' (' + s.format + ')' : s.type};
    return {label: 'any JSON'};
  }

  function enumChips(values, description) {
    // Enum comments usually list their values already; repeat them only if not.
    const meaningful = values.filter((v) => !/_UNSPECIFIED$/.test(v));
    if (description && meaningful.length && description.includes(meaningful[0])) return null;
    return el('div', {class: 'enum-values'}, values.map((v) => el('code', null, v)));
  }

  // fieldList renders an object schema's properties, recursing into nested
  // messages; stack holds the definitions being expanded, to stop at cycles.
  function fieldList(schema, depth, stack) {
    const list = el('ul', {class: 'fields'});
    const required = new Set(schema.required || []);
    for (const [name, prop] of Object.entries(schema.properties || {})) {
      const info = typeInfo(prop);
      const resolved = resolve(prop).schema;
      const description = prop.description || prop.title || resolved.description || resolved.title || '';
      const head = el('div', {class: 'field-head'},
        el('span', {class: 'field-name'}, name),
        el('span', {class: 'type'}, info.label),
        required.has(name) && el('span', {class: 'badge required'}, 'required'),
        (prop.readOnly || resolved.readOnly) && el('span', {class: 'badge'}, 'output only'));
      const item = el('li', null, head, richText(description));
      if (info.enumValues) item.append(enumChips(info.enumValues, description) || '');
      if (info.child) item.append(nested(info, depth, stack));
      list.append(item);
    }
    return list;
  }

  function nested(info, depth, stack) {
    if (info.name && stack.includes(info.name)) {
      return el('p', {class: 'schema-ref'}, 'Recursive: the fields of ' + displayName(info.name) + ', shown above.');
    }
    if (depth >= MAX_DEPTH) return el('p', {class: 'schema-ref'}, 'Fields of ' + displayName(info.name) + ' (too deep to show).');
    const count = Object.keys(info.child.properties || {}).length;
    const box = el('details', {class: 'nested', open: depth < OPEN_DEPTH},
      el('summary', null, count + (count === 1 ? ' field' : ' fields') + (info.name ? ' of ' + displayName(info.name) : '')));
    // Built on first opening: some trees are large and most stay folded.
    const fill = () => {
      if (box.dataset.filled) return;
      box.dataset.filled = '1';
      box.append(fieldList(info.child, depth + 1, info.name ? stack.concat(info.name) : stack));
    };
    if (box.open) fill();
    else box.addEventListener('toggle', fill);
    return box;
  }

  function schemaBlock(schema) {
    const info = typeInfo(schema);
    if (!info.child) {
      return [el('p', {class: 'schema-ref'}, info.label + (info.enumValues ? ': one of ' + info.enumValues.join(', ') : ''))];
    }
    const parts = [];
    if (info.label.startsWith('array of')) parts.push(el('p', {class: 'schema-ref'}, info.label));
    else if (info.name) parts.push(el('p', {class: 'schema-ref'}, displayName(info.name)));
    parts.push(fieldList(info.child, 0, info.name ? [info.name] : []));
    return parts;
  }

  // example builds a sample value for a schema: writable fields only, enums at
  // their first meaningful value.
  function example(schema, key, depth, stack) {
    const {schema: s, name} = resolve(schema);
    if (s.example !== undefined) return s.example;
    if (s.enum) return s.enum.find((v) => !/_UNSPECIFIED$/.test(v)) || s.enum[0];
    switch (s.type) {
      case 'string':
        if (s.format === 'date-time') return '2025-01-31T12:00:00Z';
        if (s.format === 'int64' || s.format === 'uint64') return '0';
        if (s.format === 'byte') return '';
        if (key === 'external_id') return 'user@example.com';
        if (/(^|_)id$/.test(key || '')) return SAMPLE_ID;
        return 'string';
      case 'integer':
      case 'number':
        return 0;
      case 'boolean':
        return false;
      case 'array':
        return depth > 4 ? [] : [example(s.items || {}, key, depth + 1, stack)];
    }
    if (s.properties) {
      if (depth > 4 || (name && stack.includes(name))) return {};
      const out = {};
      for (const [k, v] of Object.entries(s.properties)) {
        if (v.readOnly || resolve(v).schema.readOnly) continue;
        out[k] = example(v, k, depth + 1, name ? stack.concat(name) : stack);
      }
      return out;
    }
    return {};
  }

  function shellQuote(text) {
    return "'" + text.replace(/'/g, "'\\''") + "'";
  }

  function curl(op) {
    const path = op.path.replace(/\{([^}=]+)(=[^}]*)?\}/g, (_, name) =>
      (/(^|[._])id$/.test(name) ? SAMPLE_ID : name.replace(/\W+/g, '_').toUpperCase()));
    const query = (op.op.parameters || [])
      .filter((p) => p.in === 'query' && p.required)
      .map((p) => encodeURIComponent(p.name) + '=' + encodeURIComponent(String(example(p, p.name, 0, []))));
    const url = location.origin + path + (query.length ? '?' + query.join('&') : '');
    const lines = ['curl' + (op.method === 'get' ? '' : ' -X ' + op.method.toUpperCase()) + ' ' + shellQuote(url)];
    lines.push('-H "Authorization: Bearer $MANUSHYA_TOKEN"');
    const body = (op.op.parameters || []).find((p) => p.in === 'body');
    if (body) {
      lines.push("-H 'Content-Type: application/json'");
      lines.push('-d ' + shellQuote(JSON.stringify(example(body.schema || {}, body.name, 0, []), null, 2)));
    }
    return lines.join(' \\\n  ');
  }

  function copyButton(text) {
    const button = el('button', {class: 'copy', type: 'button'}, 'Copy');
    button.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = 'Copied';
      } catch {
        button.textContent = 'Select and copy';
      }
      setTimeout(() => { button.textContent = 'Copy'; }, 1500);
    });
    return button;
  }

  function pathWithParams(path) {
    const out = el('code', {class: 'path'});
    for (const part of path.split(/(\{[^}]+\})/)) {
      out.append(part.startsWith('{') ? el('span', {class: 'param'}, part) : part);
    }
    return out;
  }

  function parameterTable(params) {
    const rows = params.map((p) => {
      const info = typeInfo(p.schema || p);
      const label = p.type === 'array' ? 'array of ' + typeInfo(p.items || {}).label + ' (repeat the parameter)' : info.label;
      const cell = el('td', null, richText(p.description || ''));
      if (p.enum || (p.items && p.items.enum)) cell.append(enumChips(p.enum || p.items.enum, p.description) || '');
      return el('tr', null,
        el('td', null, el('span', {class: 'field-name'}, p.name), ' ', p.required ? el('span', {class: 'badge required'}, 'required') : ''),
        el('td', null, p.in),
        el('td', null, el('span', {class: 'type'}, label)),
        cell);
    });
    return el('table', {class: 'params'},
      el('thead', null, el('tr', null, el('th', null, 'Name'), el('th', null, 'In'), el('th', null, 'Type'), el('th', null, 'Description'))),
      el('tbody', null, rows));
  }

  function operation(op) {
    const o = op.op;
    const article = el('article', {class: 'op', id: op.anchor},
      el('div', {class: 'op-head'},
        el('span', {class: 'method ' + op.method}, op.method.toUpperCase()),
        pathWithParams(op.path),
        o.operationId && el('span', {class: 'op-id'}, o.operationId.replace('_', '.'))),
      el('h3', null, o.summary || o.operationId || op.path),
      richText(o.description));

    const params = (o.parameters || []).filter((p) => p.in !== 'body');
    if (params.length) article.append(el('h4', null, 'Parameters'), parameterTable(params));

    const body = (o.parameters || []).find((p) => p.in === 'body');
    if (body) {
      article.append(el('h4', null, 'Request body'));
      if (body.name && body.name !== 'body') {
        article.append(el('p', {class: 'schema-ref'}, 'The body is the ', el('code', null, body.name), ' field of the request.'));
      }
      article.append(...schemaBlock(body.schema || {}));
    }

    const responses = o.responses || {};
    for (const [code, response] of Object.entries(responses)) {
      if (code === 'default') continue;
      article.append(el('h4', null, 'Response ' + code));
      if (response.schema) article.append(...schemaBlock(response.schema));
      else article.append(el('p', {class: 'schema-ref'}, response.description || ''));
    }
    if (responses.default) {
      article.append(el('p', {class: 'schema-ref'}, 'Errors: a ', el('code', null, 'google.rpc.Status'), ' body, see ', el('a', {href: '#errors'}, 'Errors'), '.'));
    }

    const sample = curl(op);
    article.append(el('h4', null, 'Example'),
      el('div', {class: 'sample'}, el('pre', {class: 'code'}, sample), copyButton(sample)));
    return article;
  }

  function tagTitle(tag) {
    return tag.replace(/Service$/, '').replace(/([a-z])([A-Z])/g, '$1 $2') || tag;
  }

  function anchorFor(text) {
    return text.replace(/[^A-Za-z0-9_-]+/g, '-');
  }

  // collect groups the operations by tag, in the document's order.
  function collect(spec) {
    const groups = new Map();
    for (const tag of spec.tags || []) groups.set(tag.name, {tag, ops: []});
    for (const [path, item] of Object.entries(spec.paths || {})) {
      for (const method of METHODS) {
        const o = item[method];
        if (!o) continue;
        const tagName = (o.tags && o.tags[0]) || 'Other';
        if (!groups.has(tagName)) groups.set(tagName, {tag: {name: tagName}, ops: []});
        groups.get(tagName).ops.push({path, method, op: o, anchor: 'op-' + anchorFor(o.operationId || method + path)});
      }
    }
    const rank = (name) => {
      const i = SERVICE_ORDER.indexOf(name);
      return i < 0 ? SERVICE_ORDER.length : i;
    };
    // Array.prototype.sort is stable, so unknown services keep document order.
    return [...groups.values()]
      .filter((g) => g.ops.length > 0)
      .sort((a, b) => rank(a.tag.name) - rank(b.tag.name));
  }

  function renderNav(groups) {
    const nav = document.getElementById('nav');
    nav.replaceChildren(...groups.map((g) => el('details', {class: 'nav-group', open: true, 'data-tag': g.tag.name},
      el('summary', null, tagTitle(g.tag.name)),
      el('ul', null, g.ops.map((op) => el('li', {'data-search': [op.method, op.path, op.op.summary, op.op.operationId].join(' ').toLowerCase()},
        el('a', {href: '#' + op.anchor},
          el('span', {class: 'method ' + op.method}, op.method),
          el('span', {class: 'nav-label', title: op.path}, (op.op.summary || op.path).replace(/\.$/, '')))))))));

    const filter = document.getElementById('filter');
    filter.addEventListener('input', () => {
      const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      for (const group of nav.querySelectorAll('.nav-group')) {
        let visible = 0;
        for (const item of group.querySelectorAll('li')) {
          const match = words.every((w) => item.dataset.search.includes(w));
          item.hidden = !match;
          if (match) visible++;
        }
        group.hidden = visible === 0;
        if (words.length) group.open = true;
      }
    });
  }

  function renderReference(spec, groups) {
    const sections = groups.map((g) => el('section', {class: 'tag-section', id: 'tag-' + anchorFor(g.tag.name)},
      el('header', null,
        el('h2', null, tagTitle(g.tag.name)),
        el('div', {class: 'grpc-name'}, g.tag.name),
        richText(g.tag.description)),
      g.ops.map(operation)));
    document.getElementById('reference').replaceChildren(...sections);

    const reasons = definitions.v1ErrorReason;
    if (reasons) {
      document.getElementById('error-reasons').replaceChildren(
        el('h4', null, 'Reasons'), richText(reasons.description || ''));
    }
    if (spec.info && spec.info.title) document.title = spec.info.title + ' reference';
  }

  function markActive() {
    for (const a of document.querySelectorAll('.sidebar a.active')) a.classList.remove('active');
    for (const a of document.querySelectorAll('.sidebar a')) {
      if (location.hash && a.getAttribute('href') === location.hash) a.classList.add('active');
    }
  }

  async function main() {
    for (const node of document.querySelectorAll('.base-url')) node.textContent = location.origin;
    const target = document.getElementById('reference');
    let spec;
    try {
      const response = await fetch(SPEC_URL, {headers: {Accept: 'application/json'}});
      if (!response.ok) throw new Error('HTTP ' + response.status);
      spec = await response.json();
    } catch (err) {
      target.replaceChildren(el('p', {class: 'status error'}, 'Could not load ' + SPEC_URL + ': ' + err.message));
      return;
    }
    definitions = spec.definitions || {};
    const groups = collect(spec);
    renderNav(groups);
    renderReference(spec, groups);
    window.addEventListener('hashchange', markActive);
    // The anchors exist only now, so the browser could not scroll to one on load.
    if (location.hash) {
      const node = document.getElementById(decodeURIComponent(location.hash.slice(1)));
      if (node) node.scrollIntoView();
    }
    markActive();
  }

  main();
})();

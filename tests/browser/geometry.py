"""Element geometry in the page: is any text of a panel cut off, or drawn over another?

``GEOMETRY_JS`` runs in the page on every element matching a selector (a dashboard) and returns
what it measured and every problem it found:

- **boxes**: the panel, its rows and cards (``.dl-row``, ``.dl-card``, ``.dl-panel``, ipywidgets
  boxes) lie inside the window's width and inside their notebook output; none of them clips
  content wider than itself (``scrollWidth > clientWidth`` with an ``overflow`` that is not
  ``visible``);
- **text**: every text node's boxes (a ``Range`` over it: the laid-out text, the part an
  ellipsis hides included) lie inside every ancestor that clips (``overflow`` not visible) up to
  the panel; an element that clips its own text (``text-overflow: ellipsis``) has
  ``scrollWidth <= clientWidth``. Vertically, only ``overflow: hidden`` counts: a scrolling
  list (the event log) shows the rest when scrolled;
- **overlap**: no two text boxes of different elements (neither inside the other) intersect;
- **controls**: every button's label fits (``scrollWidth <= clientWidth``); a menu's chosen
  option and a text field's placeholder fit their box (measured with a canvas in the control's
  own font);
- **plots** (BokehJS draws to a canvas; what can be measured outside it): every plot view lies
  inside its card; every title's text, measured in its own font, fits the width BokehJS gave
  the title; every legend lies inside its plot.

Plot-internal labels (ticks, lane labels) are Bokeh's layout, not measured here.
"""

from __future__ import annotations

GEOMETRY_JS = r"""
(sel) => {
  const problems = [];
  const counts = {roots: 0, boxes: 0, texts: 0, buttons: 0, selects: 0, inputs: 0,
                  plots: 0, titles: 0, legends: 0};
  const vw = document.documentElement.clientWidth;
  const R = r => [Math.round(r.left), Math.round(r.top), Math.round(r.width),
                  Math.round(r.height)];
  const desc = el => {
    if (!el) return "?";
    const cls = [...(el.classList || [])].filter(c => c.startsWith("dl-") ||
                  c.startsWith("widget") || c.startsWith("jupyter")).slice(0, 3).join(".");
    const text = (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 40);
    return `${el.tagName.toLowerCase()}${cls ? "." + cls : ""} "${text}"`;
  };
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d");
  const textWidth = (text, font) => { ctx.font = font; return ctx.measureText(text).width; };
  const SLACK = 1.5;  // sub-pixel rounding

  for (const root of document.querySelectorAll(sel)) {
    counts.roots += 1;
    const area = root.closest(".jp-OutputArea-output") || root.parentElement;
    const areaRect = area.getBoundingClientRect();
    // -- boxes ---------------------------------------------------------------------------
    const boxes = [root, ...root.querySelectorAll(".dl-row, .dl-card, .dl-panel, .widget-box")];
    for (const el of boxes) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      counts.boxes += 1;
      if (r.left < -SLACK || r.right > vw + SLACK)
        problems.push({what: "box outside the window", el: desc(el), rect: R(r), window: vw});
      else if (r.right > areaRect.right + SLACK || r.left < areaRect.left - SLACK)
        problems.push({what: "box outside its output", el: desc(el), rect: R(r),
                       output: R(areaRect)});
      const cs = getComputedStyle(el);
      if (cs.overflowX !== "visible" && el.scrollWidth > el.clientWidth + SLACK)
        problems.push({what: "box clips content wider than itself", el: desc(el),
                       scroll: el.scrollWidth, client: el.clientWidth});
    }
    // -- text ----------------------------------------------------------------------------
    const texts = [];
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const range = document.createRange();
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (!node.textContent.trim()) continue;
      const el = node.parentElement;
      if (!el || el.closest("style, script, option, select, textarea")) continue;
      if (el.getClientRects().length === 0) continue;  // not displayed
      range.selectNodeContents(node);
      const rects = [...range.getClientRects()].filter(r => r.width > 0.5 && r.height > 0.5);
      if (!rects.length) continue;
      counts.texts += 1;
      // clipped by an ancestor (up to the panel's output)
      let clipped = null;
      for (let a = el; a && a !== area; a = a.parentElement) {
        const cs = getComputedStyle(a);
        const clipX = cs.overflowX !== "visible", clipY = cs.overflowY === "hidden";
        if (!clipX && !clipY) continue;
        const ar = a.getBoundingClientRect();
        for (const r of rects) {
          if (clipX && (r.right > ar.right + SLACK || r.left < ar.left - SLACK)) clipped = a;
          if (clipY && (r.bottom > ar.bottom + SLACK || r.top < ar.top - SLACK)) clipped = a;
        }
        if (clipped) break;
      }
      if (clipped)
        problems.push({what: "text cut off", text: node.textContent.trim().slice(0, 60),
                       el: desc(el), by: desc(clipped), rects: rects.map(R),
                       box: R(clipped.getBoundingClientRect())});
      const cs = getComputedStyle(el);
      if (cs.overflowX !== "visible" && el.scrollWidth > el.clientWidth + SLACK)
        problems.push({what: "text wider than its element", el: desc(el),
                       scroll: el.scrollWidth, client: el.clientWidth});
      for (const r of rects) texts.push({el, r, text: node.textContent.trim().slice(0, 30)});
    }
    // -- overlap -------------------------------------------------------------------------
    for (let i = 0; i < texts.length; i++) {
      for (let j = i + 1; j < texts.length; j++) {
        const a = texts[i], b = texts[j];
        if (a.el === b.el || a.el.contains(b.el) || b.el.contains(a.el)) continue;
        const w = Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left);
        const h = Math.min(a.r.bottom, b.r.bottom) - Math.max(a.r.top, b.r.top);
        if (w > 2 && h > 2)
          problems.push({what: "texts overlap", a: a.text, b: b.text, ra: R(a.r), rb: R(b.r)});
      }
    }
    // -- controls ------------------------------------------------------------------------
    for (const b of root.querySelectorAll("button")) {
      if (b.getClientRects().length === 0) continue;
      counts.buttons += 1;
      if (b.scrollWidth > b.clientWidth + SLACK)
        problems.push({what: "button label cut off", el: desc(b), scroll: b.scrollWidth,
                       client: b.clientWidth});
    }
    const fits = (el, text, extra) => {
      const cs = getComputedStyle(el);
      const room = el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight)
                   - extra;
      const need = textWidth(
        text, `${cs.fontStyle} ${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`);
      return [need <= room + SLACK, Math.round(need), Math.round(room)];
    };
    for (const s of root.querySelectorAll("select")) {
      if (s.getClientRects().length === 0 || !s.selectedOptions.length) continue;
      counts.selects += 1;
      const [ok, need, room] = fits(s, s.selectedOptions[0].text, 16);  // 16: the arrow
      if (!ok) problems.push({what: "menu text cut off", text: s.selectedOptions[0].text,
                              need, room});
    }
    for (const inp of root.querySelectorAll("input[type=text], input:not([type])")) {
      if (inp.getClientRects().length === 0) continue;
      const text = inp.value || inp.placeholder;
      if (!text) continue;
      counts.inputs += 1;
      const [ok, need, room] = fits(inp, text, 0);
      if (!ok) problems.push({what: "text field cut off", text, need, room});
    }
  }
  // -- plots (BokehJS views; their elements live in shadow roots) ------------------------
  const host = el => {  // the light-DOM element a shadow-DOM element is drawn in
    while (el && el.getRootNode() instanceof ShadowRoot) el = el.getRootNode().host;
    return el;
  };
  const roots = [...document.querySelectorAll(sel)];
  const inRoot = el => roots.some(r => r.contains(host(el)));
  if (window.Bokeh && window.Bokeh.index) {
    for (const v of window.Bokeh.index.query(v => v.model && v.el && v.el.isConnected)) {
      const type = v.model.type;
      if (!inRoot(v.el)) continue;
      if (type === "Figure" || type === "Plot") {
        counts.plots += 1;
        const card = host(v.el).closest(".dl-card") || host(v.el).closest(".dl-panel");
        const r = v.el.getBoundingClientRect(), c = card.getBoundingClientRect();
        if (r.left < c.left - SLACK || r.right > c.right + SLACK || r.right > vw + SLACK)
          problems.push({what: "plot outside its card", title: v.model.title && v.model.title.text,
                         rect: R(r), card: R(c)});
      } else if (type === "Title" && v.model.text && v.bbox) {
        counts.titles += 1;
        const m = v.model;
        const font = `${m.text_font_style} ${m.text_font_size} ${m.text_font}`;
        const need = textWidth(m.text, font);
        if (need > v.bbox.width + SLACK)
          problems.push({what: "plot title cut off", text: m.text, need: Math.round(need),
                         room: Math.round(v.bbox.width)});
      } else if (type === "Legend" && v.bbox && v.parent && v.parent.bbox) {
        counts.legends += 1;
        const b = v.bbox, p = v.parent.bbox;
        if (b.x < -SLACK || b.x + b.width > p.width + SLACK)
          problems.push({what: "legend outside its plot", legend: [b.x, b.width].map(Math.round),
                         plot: Math.round(p.width)});
      }
    }
  }
  return {counts, problems: problems.slice(0, 60), total: problems.length, window: vw};
}
"""

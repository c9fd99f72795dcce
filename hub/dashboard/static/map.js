// The map: grid polygons and incident markers on one canvas, in Web Mercator so an optional tile layer
// lines up. Zoom with the wheel or the buttons, pan by dragging; dense markers merge into clusters.
"use strict";

const SEVERITY_ORDER = ["info", "low", "medium", "high", "critical"];
const MARKER_FIT_MIN_SPAN = 12 / 40075;  // at least about 12 km across (in world units of the Web Mercator square)
const SEVERITY_COLOUR = { info: "#9e9e9e", low: "#4f9fd6", medium: "#f2c12e", high: "#f07b28", critical: "#d7191c" };
const LEVEL_ORDER = ["district", "street", "community", "grid", "micro_grid"];
const SHADE_MIN_PX = 28;
const CLUSTER_PX = 34;
const MARKER_RADIUS = 6;
const TILE_PX = 256;
// Cell outlines are Path2D objects built once, in world units times LOCAL_SCALE around a local origin, so a
// redraw is one native stroke per cell under a canvas transform (and float32 paths keep sub-pixel precision).
const LOCAL_SCALE = 1e6;

function mercator(lon, lat) {
  const sin = Math.sin((Math.max(-85, Math.min(85, lat)) * Math.PI) / 180);
  return [(lon + 180) / 360, 0.5 - Math.log((1 + sin) / (1 - sin)) / (4 * Math.PI)];
}

function ringsOf(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return geometry.coordinates;
  if (geometry.type === "MultiPolygon") return geometry.coordinates.flat();
  return [];
}

// Where a cell's name goes (the centre of its bounding box) and how wide the cell is, in world units.
function labelBox(rings) {
  const points = rings.flat();
  if (!points.length) return { labelX: 0, labelY: 0, span: 0 };
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [minX, maxX, minY, maxY] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  return { labelX: (minX + maxX) / 2, labelY: (minY + maxY) / 2, span: maxX - minX };
}

class GridMap {
  constructor(canvas, { onSelect, tileUrl }) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.onSelect = onSelect;
    this.tileUrl = tileUrl;
    this.tiles = new Map();
    this.cells = [];
    this.levelSpans = [];
    this.origin = [0, 0];
    this.markers = [];
    this.areas = [];
    this.cellCounts = new Map();
    this.selected = null;
    this.view = { x: 0.5, y: 0.5, scale: 1024 };
    this.hitTargets = [];
    this.pending = false;
    this.listen();
    new ResizeObserver(() => this.resize()).observe(canvas.parentElement);
    this.resize();
  }

  // Grid polygons (GeoJSON from /api/grids), projected once.
  setCells(collection) {
    const levels = new Set();
    this.cells = collection.features.map((feature) => {
      const properties = feature.properties;
      if (properties.level) levels.add(properties.level);
      const rings = ringsOf(feature.geometry).map((ring) => ring.map(([lon, lat]) => mercator(lon, lat)));
      return { ...properties, rings, ...labelBox(rings) };
    });
    this.origin = this.cells.find((cell) => cell.rings.length)?.rings[0][0] ?? [0, 0];
    for (const cell of this.cells) cell.path = this.localPath(cell.rings);
    this.cells.sort((a, b) => LEVEL_ORDER.indexOf(a.level) - LEVEL_ORDER.indexOf(b.level));
    this.levelSpans = LEVEL_ORDER.filter((level) => levels.has(level)).map((level) => {
      const spans = this.cells.filter((cell) => cell.level === level).map((cell) => cell.span).sort((a, b) => a - b);
      return [level, spans[Math.floor(spans.length / 2)]];
    });
    this.fit();
    this.fittedToMarkers = false;
    this.fitMarkersOnce();
  }

  localPath(rings) {
    const path = new Path2D();
    const [ox, oy] = this.origin;
    for (const ring of rings) {
      ring.forEach(([x, y], index) => {
        const [u, v] = [(x - ox) * LOCAL_SCALE, (y - oy) * LOCAL_SCALE];
        if (index === 0) path.moveTo(u, v);
        else path.lineTo(u, v);
      });
      path.closePath();
    }
    return path;
  }

  // Open incidents to draw: [{id, severity, lon, lat, area}]; an incident with an area (a warning's GeoJSON
  // polygon, WGS-84 like the stream) is drawn as a shaded polygon under the markers.
  setMarkers(incidents, cellCounts) {
    this.markers = [];
    this.areas = incidents.filter((incident) => incident.area).map((incident) => {
      const rings = ringsOf(incident.area).map((ring) => ring.map(([lon, lat]) => mercator(lon, lat)));
      return { id: incident.id, severity: incident.severity, rings };
    });
    this.canvas.dataset.areas = String(this.areas.length);  // what is drawn, for tests and assistive tools
    for (const incident of incidents) {
      if (incident.lon == null || incident.lat == null) continue;
      const [x, y] = mercator(incident.lon, incident.lat);
      this.markers.push({ id: incident.id, severity: incident.severity, x, y, rank: SEVERITY_ORDER.indexOf(incident.severity) });
    }
    this.cellCounts = cellCounts;
    this.fitMarkersOnce();
    this.draw();
  }

  // Highlight one incident and bring it into view when it is off screen.
  select(id) {
    this.selected = id;
    const marker = this.markers.find((m) => m.id === id);
    if (marker) {
      const [sx, sy] = this.toScreen(marker.x, marker.y);
      if (sx < 0 || sy < 0 || sx > this.width || sy > this.height) [this.view.x, this.view.y] = [marker.x, marker.y];
    }
    this.draw();
  }

  fit() {
    const points = this.cells.length ? this.cells.flatMap((cell) => cell.rings.flat()) : this.markers.map((m) => [m.x, m.y]);
    this.fitPoints(points);
  }

  // The first incidents to arrive are brought into view: a city's grids are far wider than where things happen.
  fitMarkersOnce() {
    if (this.fittedToMarkers || !this.markers.length) return;
    this.fittedToMarkers = true;
    const [cx, cy] = [this.markers.reduce((sum, m) => sum + m.x, 0) / this.markers.length,
      this.markers.reduce((sum, m) => sum + m.y, 0) / this.markers.length];
    const margin = MARKER_FIT_MIN_SPAN / 2;
    this.fitPoints([...this.markers.map((m) => [m.x, m.y]), [cx - margin, cy - margin], [cx + margin, cy + margin]]);
  }

  fitPoints(points) {
    if (!points.length) return this.draw();
    const xs = points.map((p) => p[0]);
    const ys = points.map((p) => p[1]);
    const [minX, maxX, minY, maxY] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    this.view.x = (minX + maxX) / 2;
    this.view.y = (minY + maxY) / 2;
    this.view.scale = 0.9 * Math.min(this.width / Math.max(maxX - minX, 1e-9), this.height / Math.max(maxY - minY, 1e-9));
    this.draw();
  }

  zoom(factor, atX = this.width / 2, atY = this.height / 2) {
    const [wx, wy] = this.toWorld(atX, atY);
    this.view.scale = Math.max(256, Math.min(2 ** 28, this.view.scale * factor));
    this.view.x = wx - (atX - this.width / 2) / this.view.scale;
    this.view.y = wy - (atY - this.height / 2) / this.view.scale;
    this.draw();
  }

  toScreen(x, y) {
    return [(x - this.view.x) * this.view.scale + this.width / 2, (y - this.view.y) * this.view.scale + this.height / 2];
  }

  toWorld(sx, sy) {
    return [(sx - this.width / 2) / this.view.scale + this.view.x, (sy - this.height / 2) / this.view.scale + this.view.y];
  }

  resize() {
    const box = this.canvas.parentElement.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    this.width = box.width;
    this.height = box.height;
    this.canvas.width = Math.round(box.width * ratio);
    this.canvas.height = Math.round(box.height * ratio);
    this.canvas.style.width = `${box.width}px`;
    this.canvas.style.height = `${box.height}px`;
    this.context.setTransform(ratio, 0, 0, ratio, 0, 0);
    this.draw();
  }

  // Coalesce redraw requests into one per animation frame.
  draw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.paint();
    });
  }

  paint() {
    const context = this.context;
    context.clearRect(0, 0, this.width, this.height);
    if (this.tileUrl) this.paintTiles();
    this.paintCells();
    this.paintAreas();
    this.paintMarkers();
  }

  paintAreas() {
    const context = this.context;
    for (const area of this.areas) {
      context.beginPath();
      for (const ring of area.rings) {
        ring.forEach(([x, y], index) => {
          const [sx, sy] = this.toScreen(x, y);
          if (index === 0) context.moveTo(sx, sy);
          else context.lineTo(sx, sy);
        });
        context.closePath();
      }
      const colour = SEVERITY_COLOUR[area.severity] || SEVERITY_COLOUR.medium;
      context.fillStyle = colour;
      context.globalAlpha = area.id === this.selected ? 0.35 : 0.2;
      context.fill("evenodd");
      context.globalAlpha = 1;
      context.setLineDash([6, 4]);
      context.lineWidth = 2;
      context.strokeStyle = colour;
      context.stroke();
      context.setLineDash([]);
    }
  }

  paintTiles() {
    const zoom = Math.max(0, Math.min(19, Math.round(Math.log2(this.view.scale / TILE_PX))));
    const count = 2 ** zoom;
    const size = this.view.scale / count;
    const [left, top] = this.toWorld(0, 0);
    const [right, bottom] = this.toWorld(this.width, this.height);
    for (let tx = Math.max(0, Math.floor(left * count)); tx <= Math.min(count - 1, Math.floor(right * count)); tx++) {
      for (let ty = Math.max(0, Math.floor(top * count)); ty <= Math.min(count - 1, Math.floor(bottom * count)); ty++) {
        const image = this.tile(zoom, tx, ty);
        if (!image.complete || !image.naturalWidth) continue;
        const [sx, sy] = this.toScreen(tx / count, ty / count);
        this.context.drawImage(image, sx, sy, size + 0.5, size + 0.5);
      }
    }
  }

  tile(zoom, x, y) {
    const url = this.tileUrl.replace("{z}", zoom).replace("{x}", x).replace("{y}", y);
    let image = this.tiles.get(url);
    if (!image) {
      image = new Image();
      image.onload = () => this.draw();
      image.src = url;
      this.tiles.set(url, image);
    }
    return image;
  }

  // One admin level is shaded, so nested cells do not stack their colours: the most detailed level whose
  // typical cell is still big enough on screen to see.
  shadedLevel() {
    let chosen = this.levelSpans[0]?.[0] ?? null;
    for (const [level, span] of this.levelSpans) if (span * this.view.scale >= SHADE_MIN_PX) chosen = level;
    return chosen;
  }

  paintCells() {
    const context = this.context;
    const shaded = this.shadedLevel();
    const counts = this.cells.filter((cell) => cell.level === shaded).map((cell) => this.cellCounts.get(cell.id) || 0);
    const maxCount = Math.max(1, ...counts);
    const ratio = window.devicePixelRatio || 1;
    const pixel = LOCAL_SCALE / this.view.scale;  // one screen pixel in local units
    const [ox, oy] = this.toScreen(...this.origin);
    context.setTransform(ratio / pixel, 0, 0, ratio / pixel, ratio * ox, ratio * oy);
    for (const cell of this.cells) {
      if (cell.span * this.view.scale < 3) continue;  // too small to see at this zoom
      const count = this.cellCounts.get(cell.id) || 0;
      if (cell.level === shaded && count > 0) {
        context.fillStyle = `rgba(215, 48, 39, ${0.12 + 0.5 * (count / maxCount)})`;
        context.fill(cell.path, "evenodd");
      }
      const depth = LEVEL_ORDER.indexOf(cell.level);
      context.setLineDash(depth < 0 ? [4 * pixel, 3 * pixel] : []);
      context.lineWidth = (depth < 0 ? 1 : Math.max(0.6, 2.5 - depth)) * pixel;
      context.strokeStyle = depth <= 0 ? "#9fb3cc" : depth === 1 ? "#6f86a3" : "#3b4d66";
      context.stroke(cell.path);
    }
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.setLineDash([]);
    this.paintLabels();
  }

  // Names of the two upper levels, where the cell is wide enough on screen to hold them.
  paintLabels() {
    const context = this.context;
    context.textAlign = "center";
    context.textBaseline = "middle";
    for (const cell of this.cells) {
      const depth = LEVEL_ORDER.indexOf(cell.level);
      if (depth < 0 || depth > 1 || !cell.name || cell.span * this.view.scale < 90) continue;
      const [x, y] = this.toScreen(cell.labelX, cell.labelY);
      context.font = depth === 0 ? "bold 15px system-ui, sans-serif" : "12px system-ui, sans-serif";
      context.fillStyle = depth === 0 ? "rgba(220, 232, 245, 0.55)" : "rgba(180, 198, 220, 0.6)";
      context.fillText(cell.name, x, depth === 0 ? y : y + 14);
    }
  }

  // Markers by screen bucket: a bucket with one marker draws it, a fuller one draws a cluster.
  paintMarkers() {
    const context = this.context;
    const buckets = new Map();
    for (const marker of this.markers) {
      const [sx, sy] = this.toScreen(marker.x, marker.y);
      if (sx < -CLUSTER_PX || sy < -CLUSTER_PX || sx > this.width + CLUSTER_PX || sy > this.height + CLUSTER_PX) continue;
      const key = `${Math.floor(sx / CLUSTER_PX)},${Math.floor(sy / CLUSTER_PX)}`;
      let bucket = buckets.get(key);
      if (!bucket) buckets.set(key, (bucket = { members: [], sx: 0, sy: 0, rank: -1 }));
      bucket.members.push(marker);
      bucket.sx += sx;
      bucket.sy += sy;
      bucket.rank = Math.max(bucket.rank, marker.rank);
    }
    this.hitTargets = [];
    for (const bucket of buckets.values()) {
      const n = bucket.members.length;
      const [x, y] = [bucket.sx / n, bucket.sy / n];
      const colour = SEVERITY_COLOUR[SEVERITY_ORDER[bucket.rank]] || SEVERITY_COLOUR.medium;
      const radius = n === 1 ? MARKER_RADIUS : Math.min(22, 9 + 3 * Math.log10(n) * 2);
      context.beginPath();
      context.arc(x, y, radius, 0, 2 * Math.PI);
      context.fillStyle = colour;
      context.globalAlpha = n === 1 ? 1 : 0.85;
      context.fill();
      context.globalAlpha = 1;
      context.lineWidth = n === 1 && bucket.members[0].id === this.selected ? 3 : 1.5;
      context.strokeStyle = n === 1 && bucket.members[0].id === this.selected ? "#000" : "#fff";
      context.stroke();
      if (n > 1) {
        context.fillStyle = "#fff";
        context.font = "bold 11px system-ui, sans-serif";
        context.textAlign = "center";
        context.textBaseline = "middle";
        context.fillText(String(n), x, y);
      }
      this.hitTargets.push({ x, y, radius, members: bucket.members });
    }
  }

  hit(sx, sy) {
    return this.hitTargets.find((target) => (target.x - sx) ** 2 + (target.y - sy) ** 2 <= (target.radius + 3) ** 2);
  }

  listen() {
    const canvas = this.canvas;
    let drag = null;
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      this.zoom(event.deltaY < 0 ? 1.25 : 0.8, event.offsetX, event.offsetY);
    }, { passive: false });
    canvas.addEventListener("pointerdown", (event) => {
      drag = { x: event.offsetX, y: event.offsetY, moved: false };
      canvas.setPointerCapture(event.pointerId);
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!drag) {
        canvas.style.cursor = this.hit(event.offsetX, event.offsetY) ? "pointer" : "grab";
        return;
      }
      const [dx, dy] = [event.offsetX - drag.x, event.offsetY - drag.y];
      if (Math.abs(dx) + Math.abs(dy) > 2) drag.moved = true;
      this.view.x -= dx / this.view.scale;
      this.view.y -= dy / this.view.scale;
      drag.x = event.offsetX;
      drag.y = event.offsetY;
      this.draw();
    });
    canvas.addEventListener("pointerup", (event) => {
      const wasClick = drag && !drag.moved;
      drag = null;
      if (!wasClick) return;
      const target = this.hit(event.offsetX, event.offsetY);
      if (!target) return;
      if (target.members.length === 1) this.onSelect(target.members[0].id);
      else this.zoom(2.5, target.x, target.y);
    });
  }
}

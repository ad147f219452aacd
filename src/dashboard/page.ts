/**
 * The dashboard page: one self-contained HTML document (inline CSS and script, no external URL),
 * served from this module so that the build output and the npm package carry it without a copy
 * step. It polls `/-/api/stats` every two seconds and draws the chart as inline SVG.
 */
const css = `
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2330;--mute:#6b7280;--line:#e5e7eb;--cache:#16a34a;--up:#2563eb;--bad:#dc2626}
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:var(--bg);color:var(--ink)}
header{display:flex;align-items:baseline;gap:12px;padding:14px 24px;background:#111827;color:#fff}
header h1{font-size:18px;margin:0}header span{color:#9ca3af;font-size:12px}
main{display:grid;grid-template-columns:repeat(4,1fr);gap:14px;padding:18px 24px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px;min-width:0}
.card h2{margin:0 0 8px;font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--mute)}
.big{font-size:28px;font-weight:600}.sub{color:var(--mute);font-size:12px}
.wide{grid-column:span 2}.full{grid-column:1/-1}
table{width:100%;border-collapse:collapse;font-size:13px}td,th{padding:4px 6px;text-align:left;border-bottom:1px solid var(--line)}
th{color:var(--mute);font-weight:500}td.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{height:10px;background:var(--line);border-radius:5px;overflow:hidden}.bar>div{height:100%;background:var(--up)}
.fill{margin:6px 0 10px}.fill .row{display:flex;justify-content:space-between;font-size:12px;margin-bottom:3px}
code{font:12px ui-monospace,monospace}.ok{color:var(--cache)}.err{color:var(--bad)}.empty{color:var(--mute);font-style:italic}
.legend{display:flex;gap:14px;font-size:12px;color:var(--mute)}.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
svg text{font-size:10px;fill:var(--mute)}
`;

const script = `
const $ = (id) => document.getElementById(id);
const units = ['B','KiB','MiB','GiB','TiB'];
function bytes(n){ if(n===undefined||n===null) return '–'; let i=0; while(n>=1024&&i<units.length-1){n/=1024;i++} return (i?n.toFixed(1):n)+' '+units[i]; }
function ago(iso){ if(!iso) return '–'; const s=Math.max(0,Math.round((Date.now()-Date.parse(iso))/1000)); return s<60? s+'s ago' : s<3600? Math.round(s/60)+'m ago' : Math.round(s/3600)+'h ago'; }
function el(tag, attrs, text){ const e=document.createElement(tag); for(const k in attrs||{}) e.setAttribute(k, attrs[k]); if(text!==undefined) e.textContent=text; return e; }
function rows(tbody, list, cells, empty){ tbody.replaceChildren(); if(list.length===0){ const tr=el('tr'); const td=el('td',{colspan:'9',class:'empty'},empty); tr.append(td); tbody.append(tr); return; }
  for(const item of list){ const tr=el('tr'); for(const [v,cls] of cells(item)){ tr.append(el('td', cls?{class:cls}:{}, v)); } tbody.append(tr); } }
const NS='http://www.w3.org/2000/svg';
function chart(series){
  const svg=$('chart'); const W=svg.clientWidth||600, H=160, P=40; svg.setAttribute('viewBox','0 0 '+W+' '+H); svg.replaceChildren();
  if(series.length<2){ const t=document.createElementNS(NS,'text'); t.setAttribute('x',P); t.setAttribute('y',H/2); t.textContent='waiting for traffic…'; svg.append(t); return; }
  const t0=series[0][0], t1=series[series.length-1][0]||t0+1; const max=Math.max(1,...series.map(p=>Math.max(p[1],p[2])));
  const x=(t)=>P+(W-P-8)*(t-t0)/Math.max(1,t1-t0), y=(v)=>H-18-(H-28)*v/max;
  for(const f of [0,0.5,1]){ const l=document.createElementNS(NS,'line'); l.setAttribute('x1',P); l.setAttribute('x2',W-8); l.setAttribute('y1',y(max*f)); l.setAttribute('y2',y(max*f)); l.setAttribute('stroke','#e5e7eb'); svg.append(l);
    const t=document.createElementNS(NS,'text'); t.setAttribute('x',2); t.setAttribute('y',y(max*f)+3); t.textContent=bytes(Math.round(max*f)); svg.append(t); }
  for(const [i,color] of [[1,'#16a34a'],[2,'#2563eb']]){ const p=document.createElementNS(NS,'polyline'); p.setAttribute('fill','none'); p.setAttribute('stroke',color); p.setAttribute('stroke-width','2');
    p.setAttribute('points', series.map(s=>x(s[0]).toFixed(1)+','+y(s[i]).toFixed(1)).join(' ')); svg.append(p); }
  const t=document.createElementNS(NS,'text'); t.setAttribute('x',P); t.setAttribute('y',H-4); t.textContent='since '+new Date(t0).toLocaleTimeString(); svg.append(t);
}
function render(s){
  $('hit').textContent=(s.requests.hitRatio*100).toFixed(1)+' %';
  $('hitsub').textContent=s.requests.hits+' hits · '+s.requests.misses+' misses · '+s.requests.coalesced+' coalesced · '+s.requests.stale+' stale';
  $('saved').textContent=bytes(s.bytes.saved);
  $('savedsub').textContent=bytes(s.bytes.fromCache)+' from cache · '+bytes(s.bytes.fromUpstream)+' via upstream';
  const hub=s.upstreams.find(u=>u.ratelimitRemaining!==undefined);
  $('budget').textContent= hub? String(hub.ratelimitRemaining)+(hub.ratelimitLimit!==undefined?' / '+hub.ratelimitLimit:'') : '–';
  $('budgetsub').textContent= hub? 'pulls left at '+hub.name : 'no upstream reports a pull budget';
  const c=s.cache; $('cache').textContent= c.sizeBytes===undefined? '–' : bytes(c.sizeBytes);
  $('cachesub').textContent= 'of '+bytes(c.maxSizeBytes)+(c.objects!==undefined? ' · '+c.objects+' objects':'');
  $('cachebar').style.width= (c.sizeBytes? Math.min(100,100*c.sizeBytes/c.maxSizeBytes):0)+'%';
  chart(s.series);
  const fills=$('fills'); fills.replaceChildren();
  if(s.fills.length===0) fills.append(el('div',{class:'empty'},'no downloads running'));
  for(const f of s.fills){ const pct=f.size? Math.min(100,100*f.received/f.size):0; const d=el('div',{class:'fill','data-digest':f.digest});
    const row=el('div',{class:'row'}); row.append(el('code',{},f.digest.slice(0,19)), el('span',{}, bytes(f.received)+' / '+bytes(f.size)+' · '+f.followers+' follower'+(f.followers===1?'':'s')));
    const bar=el('div',{class:'bar',role:'progressbar','aria-valuenow':pct.toFixed(0),'aria-valuemin':'0','aria-valuemax':'100'}); const inner=el('div'); inner.style.width=pct+'%'; bar.append(inner); d.append(row,bar); fills.append(d); }
  rows($('repos'), s.topRepositories, r=>[[r.name],[bytes(r.bytes),'num'],[String(r.requests),'num']], 'nothing served yet');
  rows($('ups'), s.upstreams, u=>[[u.name],[ago(u.lastSuccess),'ok'],[u.lastError? ago(u.lastError)+': '+u.lastErrorMessage:'–', u.lastError?'err':''],[u.latencyMs===undefined?'–':u.latencyMs+' ms','num']], 'no upstreams');
  rows($('errors'), s.recentErrors.slice(0,8), e=>[[new Date(e.time).toLocaleTimeString()],[String(e.status),'err'],[e.route],[e.upstream||'–'],[e.message]], 'no errors');
  $('updated').textContent='updated '+new Date(s.now).toLocaleTimeString();
}
async function poll(){ try { const r=await fetch('/-/api/stats',{cache:'no-store'}); if(r.ok) render(await r.json()); else $('updated').textContent='stats answered '+r.status; } catch(e){ $('updated').textContent='stats unreachable'; } }
poll(); setInterval(poll, 2000);
`;

export const dashboardPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Docxy dashboard</title><link rel="icon" href="data:,"><style>${css}</style></head>
<body><header><h1>Docxy</h1><span>pull-through cache</span><span id="updated" style="margin-left:auto"></span></header>
<main>
<section class="card"><h2>Hit ratio</h2><div class="big" id="hit">–</div><div class="sub" id="hitsub"></div></section>
<section class="card"><h2>Bytes saved</h2><div class="big" id="saved">–</div><div class="sub" id="savedsub"></div></section>
<section class="card"><h2>Docker Hub pull budget</h2><div class="big" id="budget">–</div><div class="sub" id="budgetsub"></div></section>
<section class="card"><h2>Cache fill</h2><div class="big" id="cache">–</div><div class="sub" id="cachesub"></div><div class="bar" style="margin-top:8px"><div id="cachebar" style="background:var(--cache)"></div></div></section>
<section class="card wide"><h2>Bytes served over time</h2><div class="legend"><span><i style="background:var(--cache)"></i>from cache</span><span><i style="background:var(--up)"></i>via upstream</span></div><svg id="chart" width="100%" height="160"></svg></section>
<section class="card wide"><h2>Downloads in progress</h2><div id="fills"></div></section>
<section class="card wide"><h2>Top repositories</h2><table><thead><tr><th>repository</th><th class="num">served</th><th class="num">requests</th></tr></thead><tbody id="repos"></tbody></table></section>
<section class="card wide"><h2>Upstreams</h2><table><thead><tr><th>name</th><th>last success</th><th>last error</th><th class="num">latency</th></tr></thead><tbody id="ups"></tbody></table></section>
<section class="card full"><h2>Recent errors</h2><table><thead><tr><th>time</th><th>status</th><th>route</th><th>upstream</th><th>message</th></tr></thead><tbody id="errors"></tbody></table></section>
</main><script>${script}</script></body></html>
`;

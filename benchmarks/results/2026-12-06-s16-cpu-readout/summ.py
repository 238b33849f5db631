import json,glob,re
rows=[]
for f in glob.glob('bench_*/metrics.json'):
    name=f.split('/')[0][6:]
    m=re.match(r'(.*)_e(\d+)$',name); run,ep=m.group(1),int(m.group(2))
    r=json.load(open(f))['results'][0]; lat=r['latent']
    km=(lat.get('kmeans') or {}).get('ari'); sp=(lat.get('state_probe') or {}).get('accuracy')
    rho=(lat.get('spearman') or {}).get('best'); r2=(lat.get('motion_probe') or {}).get('r2')
    pi=r.get('per_image_fsc_auc'); pi=pi.get('mean') if isinstance(pi,dict) else pi
    preset='adk' if run.startswith('adk_') else 'tcr-mixed' if run.startswith('mx_') else 'tcr-compositional'
    rows.append((preset,run,ep,km,sp,rho,r2,pi))
f=lambda x: '–' if x is None else f'{x:.3f}'
print('| preset | run | epoch | ARI | state probe | abs(ρ) best | motion R² | per-image FSC-AUC |')
print('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |')
for p,run,ep,*v in sorted(rows):
    if run in ('mz',): continue
    print(f'| {p} | {run} | {ep} | ' + ' | '.join(f(x) for x in v[:-1]) + f' | {v[-1]:.4f} |')

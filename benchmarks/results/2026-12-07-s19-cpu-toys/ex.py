import json,sys,glob
for f in sorted(glob.glob(sys.argv[1] + '/bench_*_e*/metrics.json')):
    r = json.load(open(f))['results'][0]; L = r['latent']
    fsc = r.get('per_image_fsc_auc') or {}
    keys = [k for k in r if 'fsc' in k]
    print(f.split('/')[-2], 'ARI', round(L['kmeans']['ari'] or 0, 3), 'probe', L['state_probe'].get('accuracy'),
          'rho', L['spearman']['best'], 'R2', L['motion_probe']['r2'], {k: (round(r[k]['mean'],4) if isinstance(r[k], dict) and 'mean' in r[k] else None) for k in keys})

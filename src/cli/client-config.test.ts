import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../config/load.ts';
import { clientConfigs } from './client-config.ts';

const config = validateConfig({ upstreams: [{ name: 'docker.io' }, { name: 'ghcr.io' }] }, 't', {});

test('docker daemon.json points registry-mirrors at Docxy and marks plain HTTP insecure', () => {
  const c = clientConfigs('http://mirror.example:5000', config.upstreams, 'docker.io');
  assert.deepEqual(JSON.parse(c.dockerDaemonJson), {
    'registry-mirrors': ['http://mirror.example:5000'],
    'insecure-registries': ['mirror.example:5000'],
  });
  assert.equal(
    clientConfigs('https://m.example', config.upstreams, 'docker.io').dockerDaemonJson.includes('insecure'),
    false,
  );
});

test('containerd gets a hosts.toml per registry and a _default, all pointing at Docxy', () => {
  const c = clientConfigs('http://mirror.example:5000', config.upstreams, 'docker.io');
  assert.deepEqual(Object.keys(c.containerdHosts).sort(), ['_default', 'docker.io', 'ghcr.io']);
  assert.equal(
    c.containerdHosts['docker.io'],
    'server = "https://registry-1.docker.io"\n\n[host."http://mirror.example:5000"]\n  capabilities = ["pull", "resolve"]\n',
  );
  assert.match(c.containerdHosts._default ?? '', /^\[host\."http:\/\/mirror\.example:5000"\]/);
});

test('podman reaches a non-default upstream through its path prefix', () => {
  const c = clientConfigs('http://mirror.example:5000', config.upstreams, 'docker.io');
  assert.match(
    c.podmanRegistriesConf,
    /prefix = "docker.io"\nlocation = "registry-1.docker.io"\n\n\[\[registry.mirror\]\]\nlocation = "mirror.example:5000"\ninsecure = true/,
  );
  assert.match(
    c.podmanRegistriesConf,
    /prefix = "ghcr.io"\nlocation = "ghcr.io"\n\n\[\[registry.mirror\]\]\nlocation = "mirror.example:5000\/ghcr.io"/,
  );
});

test('k3s registries.yaml mirrors every registry to Docxy', () => {
  const c = clientConfigs('http://mirror.example:5000', config.upstreams, 'docker.io');
  assert.equal(
    c.k3sRegistriesYaml,
    'mirrors:\n  "docker.io":\n    endpoint:\n      - "http://mirror.example:5000"\n  "ghcr.io":\n    endpoint:\n      - "http://mirror.example:5000"\n',
  );
});

// Runs unleash-server from the npm registry (installed by `make unleash` into
// .unleash/) against PostgreSQL: for the tests, the benchmark and local runs.
//
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/unleash PORT=4242 \
//   INIT_ADMIN_API_TOKENS='*:*.admin-secret' \
//   INIT_CLIENT_API_TOKENS='default:production.client-secret' \
//   node ops/unleash/server.js
//
// The database is created first when it does not exist (CREATE_DATABASE=0 skips
// that); unleash-server migrates it at its first start. With --drop-database the
// script drops the database instead and exits (the tests' clean-up). UNLEASH_HOME says where
// unleash-server is installed (default: .unleash/ at the top of the checkout).
'use strict';
const path = require('path');

const home = process.env.UNLEASH_HOME || path.join(__dirname, '..', '..', '.unleash');
const modules = path.join(home, 'node_modules');
const unleash = require(path.join(modules, 'unleash-server'));
const { Client } = require(path.join(modules, 'pg'));

function parse(url) {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ''));
  if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`unsupported database name: ${name}`);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  return { name, admin: admin.toString() };
}

async function ensureDatabase(url) {
  const { name, admin } = parse(url);
  const client = new Client({ connectionString: admin });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount === 0) await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
}

async function dropDatabase(url) {
  const { name, admin } = parse(url);
  const client = new Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS "${name}"`);
  } finally {
    await client.end();
  }
}

async function main() {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set');
  if (process.argv.includes('--drop-database')) {
    await dropDatabase(url); // the tests' clean-up, once the server has stopped
    return;
  }
  if (process.env.CREATE_DATABASE !== '0') await ensureDatabase(url);
  const instance = await unleash.start({
    db: { ssl: false },
    server: { port: Number(process.env.PORT || 4242) },
    logLevel: process.env.LOG_LEVEL || 'warn',
  });
  console.log(`unleash-server ${instance.config ? 'started' : 'running'} on port ${process.env.PORT || 4242}`);
  const stop = () => instance.stop().then(() => process.exit(0), () => process.exit(1));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

import { PATH_METADATA } from '@nestjs/common/constants.js';
import type { IncomingMessage } from 'node:http';
import { tenantScopedControllers } from './tenant-scoped.decorator.js';

/**
 * The X-Tenant header form of tenant routes: `GET /projects` with `X-Tenant: acme` is served as
 * `GET /orgs/acme/projects`, so the path and the header name a tenant the same way and every
 * check (membership, role, transaction) is the path's. Only resources of @TenantScoped()
 * controllers are rewritten; the header value is validated by the access guard like a slug.
 */
export function tenantHeaderRewrite(): (req: IncomingMessage) => string {
  let prefixes: string[] | undefined;
  return (req) => {
    const url = req.url ?? '/';
    const header = req.headers['x-tenant'];
    if (typeof header !== 'string' || header === '' || url.startsWith('/orgs/')) return url;
    prefixes ??= resourcePrefixes();
    const hit = prefixes.find((p) => url === p || url.startsWith(`${p}/`) || url.startsWith(`${p}?`));
    return hit ? `/orgs/${encodeURIComponent(header)}${url}` : url;
  };
}

function resourcePrefixes(): string[] {
  const out = new Set<string>();
  for (const controller of tenantScopedControllers) {
    const paths = Reflect.getMetadata(PATH_METADATA, controller) as string | string[] | undefined;
    for (const path of [paths ?? []].flat()) {
      const m = /^\/?orgs\/:slug(\/[^:]+?)(\/:|$)/.exec(path);
      if (m) out.add(m[1]);
    }
  }
  return [...out];
}

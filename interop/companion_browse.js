#!/usr/bin/env node
// Issue 18 interop check with an independent stack (node-opcua): for each requested node, the
// namespace URI and browse name of its TypeDefinition, and the same for its Object children down to
// `depth` levels. Prints one JSON object; exit 0 when it ran (assertions are the caller's), 2 on a
// connection/session failure (JSON still printed with "error").
//
// usage: node interop/companion_browse.js '<json options>'
//   {endpoint, nodes: [{namespaceUri, id}], depth, ownNamespaceUri (its children keyed ~Name),
//    secure: {certFile, keyFile, applicationUri, pkiDir, serverCert, user, password}}   (optional)
"use strict";
const fs = require("fs");
const {
  OPCUAClient, MessageSecurityMode, SecurityPolicy, UserTokenType, AttributeIds, BrowseDirection,
  NodeClassMask, OPCUACertificateManager,
} = require("node-opcua");

const opt = JSON.parse(process.argv[2] || "{}");
const out = { ok: false, stack: "node-opcua", nodes: {} };

function emit(code) {
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(code);
}

async function client() {
  const s = opt.secure;
  if (!s) {
    return OPCUAClient.create({ endpointMustExist: false, connectionStrategy: { maxRetry: 0 } });
  }
  const certificateManager = new OPCUACertificateManager({
    rootFolder: s.pkiDir, automaticallyAcceptUnknownCertificate: false,
  });
  await certificateManager.initialize();
  if (s.serverCert) await certificateManager.trustCertificate(fs.readFileSync(s.serverCert));
  return OPCUAClient.create({
    applicationName: "aseptic_cell node-opcua companion check",
    applicationUri: s.applicationUri,
    certificateFile: s.certFile,
    privateKeyFile: s.keyFile,
    clientCertificateManager: certificateManager,
    securityMode: MessageSecurityMode.SignAndEncrypt,
    securityPolicy: SecurityPolicy.Basic256Sha256,
    endpointMustExist: true,
    connectionStrategy: { maxRetry: 0 },
  });
}

async function main() {
  const c = await client();
  await c.connect(opt.endpoint);
  const session = opt.secure
    ? await c.createSession({ type: UserTokenType.UserName, userName: opt.secure.user, password: opt.secure.password })
    : await c.createSession();
  try {
    const nsArray = (await session.read({ nodeId: "ns=0;i=2255", attributeId: AttributeIds.Value })).value.value;
    out.namespaces = nsArray;
    const typeOf = async (nodeId) => {
      const r = await session.browse({
        nodeId, referenceTypeId: "HasTypeDefinition", browseDirection: BrowseDirection.Forward,
        includeSubtypes: false, resultMask: 63,
      });
      if (!r.references || r.references.length === 0) return null;
      const t = r.references[0].nodeId;
      const bn = (await session.read({ nodeId: t, attributeId: AttributeIds.BrowseName })).value.value;
      return { namespace: nsArray[t.namespace], name: bn.name, id: t.toString() };
    };
    const walk = async (nodeId, depth) => {
      const entry = { type: await typeOf(nodeId), children: {} };
      if (depth > 0) {
        const r = await session.browse({
          nodeId, referenceTypeId: "HierarchicalReferences", includeSubtypes: true,
          browseDirection: BrowseDirection.Forward, nodeClassMask: NodeClassMask.Object, resultMask: 63,
        });
        for (const ref of r.references || []) {
          // our own namespace's nodes are keyed "~Name" (a device object has both, e.g. the
          // standard DI Identification and the project's own Identification folder)
          const own = nsArray[ref.browseName.namespaceIndex] === opt.ownNamespaceUri;
          entry.children[(own ? "~" : "") + ref.browseName.name] = await walk(ref.nodeId, depth - 1);
        }
      }
      return entry;
    };
    for (const n of opt.nodes || []) {
      const ns = nsArray.indexOf(n.namespaceUri);
      out.nodes[n.id] = await walk(`ns=${ns};s=${n.id}`, opt.depth === undefined ? 2 : opt.depth);
    }
    out.ok = true;
  } finally {
    await session.close();
    await c.disconnect();
  }
}

main().then(() => emit(0)).catch((e) => { out.error = String(e && e.message || e); emit(2); });

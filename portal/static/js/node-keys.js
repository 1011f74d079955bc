// Each chosen node's key, checked against the ConsortiumRegistry on chain before the data key
// is wrapped to it (read through the wallet's provider, or the portal's public RPC): a key the
// portal lists but the chain does not register is refused. Used by dataset-upload.js; `dataset`
// is the upload form's data attributes (registry, chainId, publicRpc).

import { hasWallet } from "./wallet.js";

const NODE_SELECTOR = "0x7c97e6ec"; // ConsortiumRegistry.node(bytes32)
const WALLET_UNSUPPORTED = 4200; // EIP-1193: the provider does not support the method

export class NodeKeyError extends Error {}

async function publicRpc(dataset, method, params) {
  const url = dataset.publicRpc;
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
    credentials: "omit",
  });
  const body = await response.json();
  if (body.error) throw new NodeKeyError(`the public RPC refused ${method}: ${body.error.message}`);
  return body.result;
}

/** A read of the chain through the wallet's provider, else the configured public RPC. */
async function chainRead(dataset, method, params) {
  if (hasWallet()) {
    try {
      return await window.ethereum.request({ method, params });
    } catch (err) {
      if (err?.code !== WALLET_UNSUPPORTED || !dataset.publicRpc) {
        throw new NodeKeyError(
          `cannot read the nodes' keys on chain: your wallet answered ${method} with ` +
            `"${err?.message ?? err}"` +
            (dataset.publicRpc ? "" : " and this portal configures no public RPC URL") +
            "; nothing was encrypted or sent",
        );
      }
    }
  }
  if (!dataset.publicRpc) {
    throw new NodeKeyError(
      "cannot read the nodes' keys on chain: no wallet and no public RPC URL; nothing was " +
        "encrypted or sent",
    );
  }
  return publicRpc(dataset, method, params);
}

/**
 * Refuse, naming the node, unless the chain registers exactly the key the portal listed:
 * the data key is wrapped to no key the portal alone vouches for.
 */
export async function checkNodeKeys(nodes, dataset) {
  const registry = dataset.registry;
  const chainId = dataset.chainId;
  if (!registry || !chainId) {
    throw new NodeKeyError(
      "this portal has no chain deployment record, so the nodes' keys cannot be checked on " +
        "chain; nothing was encrypted or sent",
    );
  }
  const answered = BigInt(await chainRead(dataset, "eth_chainId", []));
  if (answered !== BigInt(chainId)) {
    throw new NodeKeyError(
      `your wallet is on chain ${answered}, not the consortium's chain ${chainId}: switch ` +
        "networks, then try again; nothing was encrypted or sent",
    );
  }
  for (const node of nodes) {
    const data = NODE_SELECTOR + node.node_id.slice(2);
    const result = String(await chainRead(dataset, "eth_call", [{ to: registry, data }, "latest"]));
    const hex = result.replace(/^0x/, "");
    if (hex.length < 256) {
      throw new NodeKeyError(`the chain gave no node record for ${node.node_id}; nothing was sent`);
    }
    const memberId = BigInt(`0x${hex.slice(0, 64)}`);
    const dataKey = `0x${hex.slice(128, 192)}`.toLowerCase();
    const active = BigInt(`0x${hex.slice(192, 256)}`) !== 0n;
    if (memberId === 0n || !active) {
      throw new NodeKeyError(
        `node ${node.node_id} is not an active node on chain: refusing to wrap the data key ` +
          "to it; nothing was encrypted or sent",
      );
    }
    if (dataKey !== node.public_key) {
      throw new NodeKeyError(
        `node ${node.node_id}: the portal lists data key ${node.public_key}, but the chain ` +
          `registers ${dataKey}; refusing to wrap the data key to it; nothing was encrypted or sent`,
      );
    }
  }
}


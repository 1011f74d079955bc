// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {NoncesKeyed} from "@openzeppelin/contracts/utils/NoncesKeyed.sol";

/// @title Member-signed actions
/// @notice What every MedChain contract that relays signed actions shares: an EIP-712 domain
/// (published by ERC-5267 `eip712Domain()`, so clients read it instead of copying it), nonces
/// per signer, and one signature check.
/// @dev Each action's struct hash ends with a nonce it spends, so a signature is spent once:
/// `_useNonce(signer)`, the signer's one sequence, or `_useKeyedNonce(signer, key)` for an
/// action that must not wait on the signer's actions about other things (OpenZeppelin's
/// NoncesKeyed, ERC-4337's keyed nonces: one sequence per key).
abstract contract MemberSigned is EIP712, NoncesKeyed {
    /// @dev `recovered` is what ECDSA recovers (0 when nothing does); a contract signer
    /// (ERC-1271) that refuses reads the same.
    error MemberSignedInvalidSignature(address expected, address recovered);

    constructor(string memory name, string memory version) EIP712(name, version) {}

    /// @dev Reverts unless `signer` signed the typed data whose struct hash is `structHash`
    /// in this contract's domain: an ECDSA signature, or an ERC-1271 contract's approval.
    function _checkSignature(address signer, bytes32 structHash, bytes calldata signature) internal view {
        bytes32 digest = _hashTypedDataV4(structHash);
        if (!SignatureChecker.isValidSignatureNowCalldata(signer, digest, signature)) {
            (address recovered,,) = ECDSA.tryRecoverCalldata(digest, signature);
            revert MemberSignedInvalidSignature(signer, recovered);
        }
    }

    /// @dev Spends `signer`'s next nonce under `key` and returns its number within that key's
    /// sequence, without the key NoncesKeyed packs above it (`nonces(signer, key)` keeps it):
    /// the key derives from fields the struct already signs, so the signed nonce stays small
    /// enough for a wallet's JSON and a 64-bit column. Key it with {_nonceKey}.
    function _useKeyedNonce(address signer, uint192 key) internal returns (uint64) {
        return uint64(_useNonce(signer, key));
    }

    /// @dev The nonce key of what `encoded` (the `abi.encode` of an action's keying fields)
    /// names: the low 192 bits of its keccak256, so clients derive it the same way.
    function _nonceKey(bytes memory encoded) internal pure returns (uint192) {
        return uint192(uint256(keccak256(encoded)));
    }
}

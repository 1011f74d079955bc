// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IConsortiumRegistry} from "./IConsortiumRegistry.sol";
import {MemberSigned} from "./MemberSigned.sol";

/// @title MedChain dataset registry
/// @notice Anchors the hashes of encrypted-dataset manifests, version by version, and the
/// grants that wrap a dataset's key to a training node. Membership, delegates and nodes are
/// read from the ConsortiumRegistry. Every action can be sent directly or relayed with the
/// actor's EIP-712 signature. A member's `Data` delegate (its data steward) anchors manifests
/// and grants the member's own nodes; a grant to another member's node, a revocation and a
/// withdrawal take the member's governance key.
///
/// A dataset id carries its owner: the high 128 bits are the owning member's id and the low
/// 128 bits the uuid the member chose ({datasetIdOf}). An anchor is refused unless the id's
/// member is the signer's, so nobody can anchor first under an id another member will use.
///
/// Anchors and withdrawals spend the signer's one nonce sequence; grants and revocations the
/// signer's sequence for their (dataset, node) pair ({grantNonceKey}), so grants signed together
/// in advance land or fail each on its own.
contract DatasetRegistry is MemberSigned {
    struct Dataset {
        uint256 ownerId;
        uint32 latestVersion;
        bool withdrawn;
        bytes32 latestManifest;
    }

    struct Grant {
        bytes32 grantHash;
        bool active;
    }

    bytes32 private constant _ANCHOR_MANIFEST_TYPEHASH = keccak256(
        "AnchorManifest(bytes32 datasetId,uint32 version,bytes32 manifestHash,bytes32 previous,uint256 nonce)"
    );
    bytes32 private constant _RECORD_GRANT_TYPEHASH =
        keccak256("RecordGrant(bytes32 datasetId,bytes32 nodeId,bytes32 grantHash,uint256 nonce)");
    bytes32 private constant _REVOKE_GRANT_TYPEHASH =
        keccak256("RevokeGrant(bytes32 datasetId,bytes32 nodeId,uint256 nonce)");
    bytes32 private constant _WITHDRAW_DATASET_TYPEHASH =
        keccak256("WithdrawDataset(bytes32 datasetId,uint256 nonce)");

    IConsortiumRegistry private immutable _registry;

    mapping(bytes32 datasetId => Dataset) private _datasets;
    mapping(bytes32 datasetId => mapping(uint32 version => bytes32 manifestHash)) private _manifests;
    mapping(bytes32 datasetId => mapping(bytes32 manifestHash => uint32 version)) private _versions;
    mapping(bytes32 datasetId => mapping(bytes32 nodeId => Grant)) private _grants;

    event DatasetAnchored(
        bytes32 indexed datasetId, uint256 indexed ownerId, uint32 version, bytes32 manifestHash, bytes32 previous
    );
    event GrantRecorded(
        bytes32 indexed datasetId, bytes32 indexed nodeId, uint256 nodeMemberId, bytes32 grantHash, bool crossMember
    );
    event GrantRevoked(bytes32 indexed datasetId, bytes32 indexed nodeId);
    event DatasetWithdrawn(bytes32 indexed datasetId, uint256 indexed ownerId);

    error DatasetRegistryInvalidAddress(address account);
    error DatasetRegistryInvalidDataset(bytes32 datasetId);
    error DatasetRegistryInvalidHash(bytes32 hash);
    error DatasetRegistryNotAuthorised(address signer);
    error DatasetRegistryMemberInactive(uint256 memberId);
    error DatasetRegistryNotOwner(bytes32 datasetId, uint256 memberId);
    error DatasetRegistryUnknownDataset(bytes32 datasetId);
    error DatasetRegistryDatasetIsWithdrawn(bytes32 datasetId);
    error DatasetRegistryVersionMismatch(bytes32 datasetId, uint32 expected, uint32 given);
    error DatasetRegistryPreviousMismatch(bytes32 datasetId, bytes32 expected, bytes32 given);
    error DatasetRegistryManifestAlreadyAnchored(bytes32 manifestHash);
    /// @dev The dataset id's high half names member `idMemberId`, not the signer's `memberId`.
    error DatasetRegistryForeignId(bytes32 datasetId, uint256 idMemberId, uint256 memberId);
    error DatasetRegistryUnknownNode(bytes32 nodeId);
    error DatasetRegistryUnknownGrant(bytes32 datasetId, bytes32 nodeId);
    /// @dev A `Data` delegate granted a node of member `nodeMemberId`, not of its own member.
    error DatasetRegistryCrossMemberGrant(address delegate, bytes32 nodeId, uint256 nodeMemberId);

    /// @param registry_ The deployed ConsortiumRegistry whose members own datasets.
    constructor(IConsortiumRegistry registry_) MemberSigned("MedChain Datasets", "1") {
        if (address(registry_) == address(0)) revert DatasetRegistryInvalidAddress(address(registry_));
        _registry = registry_;
    }

    /// @notice The ConsortiumRegistry membership is read from.
    function registry() external view returns (IConsortiumRegistry) {
        return _registry;
    }

    /// @notice A dataset's owner (a member id), latest version and manifest, and whether it was withdrawn.
    /// @dev An unknown dataset reads as all zeros.
    function dataset(bytes32 datasetId)
        external
        view
        returns (uint256 ownerId, uint32 latestVersion, bytes32 latestManifest, bool withdrawn)
    {
        Dataset storage d = _datasets[datasetId];
        return (d.ownerId, d.latestVersion, d.latestManifest, d.withdrawn);
    }

    /// @notice The manifest hash anchored as `version` of a dataset, or 0.
    function manifestOf(bytes32 datasetId, uint32 version) external view returns (bytes32) {
        return _manifests[datasetId][version];
    }

    /// @notice The grant recorded for a node on a dataset, and whether it is still in force.
    function grantOf(bytes32 datasetId, bytes32 nodeId) external view returns (bytes32 grantHash, bool active) {
        Grant storage g = _grants[datasetId][nodeId];
        return (g.grantHash, g.active);
    }

    /// @notice The version of a dataset a manifest hash was anchored as; 0 if never.
    /// @dev Per dataset: a manifest hash anchored under another dataset blocks nothing here.
    function versionOf(bytes32 datasetId, bytes32 manifestHash) external view returns (uint32) {
        return _versions[datasetId][manifestHash];
    }

    /// @notice The nonce key of a dataset and node: a signer's grants and revocations of that pair
    /// take their nonces in `nonces(signer, key)`'s sequence (NoncesKeyed), apart from every
    /// other pair's. Sharing the key orders a pair's grant and revocation: once a revocation
    /// lands, a grant its signer signed before it and never sent is void: it cannot re-open access.
    function grantNonceKey(bytes32 datasetId, bytes32 nodeId) public pure returns (uint192) {
        return _nonceKey(abi.encode(datasetId, nodeId));
    }

    /// @notice The id of member `memberId`'s dataset `uuid`: the member id in the high 128 bits.
    function datasetIdOf(uint256 memberId, bytes16 uuid) public pure returns (bytes32) {
        return bytes32((memberId << 128) | uint256(uint128(uuid)));
    }

    /// @notice Anchor the next version of a dataset, sent by the owner's governance address or
    /// one of its `Data` delegates; version 1 makes the sender's member the owner. The id's
    /// high 128 bits must be the sender's member id ({datasetIdOf}).
    /// @param previous The manifest hash of the version before (0 for version 1).
    function anchorManifest(bytes32 datasetId, uint32 version, bytes32 manifestHash, bytes32 previous) external {
        _anchorManifest(msg.sender, datasetId, version, manifestHash, previous);
    }

    /// @notice Relayed form of {anchorManifest}, signed by the governance key or a `Data` delegate.
    function anchorManifestBySig(
        bytes32 datasetId,
        uint32 version,
        bytes32 manifestHash,
        bytes32 previous,
        address signer,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(
            abi.encode(_ANCHOR_MANIFEST_TYPEHASH, datasetId, version, manifestHash, previous, _useNonce(signer))
        );
        _checkSignature(signer, structHash, signature);
        _anchorManifest(signer, datasetId, version, manifestHash, previous);
    }

    /// @notice Record (or replace) the grant of a dataset's key to an active training node,
    /// sent by the owner's governance address, or by one of its `Data` delegates for a node of
    /// the owner's own. A node of another member is a cross-member ("server mode") grant: it
    /// takes the governance address and is flagged as such.
    function recordGrant(bytes32 datasetId, bytes32 nodeId, bytes32 grantHash) external {
        _recordGrant(msg.sender, datasetId, nodeId, grantHash);
    }

    /// @notice Relayed form of {recordGrant}, signed by the owner's governance key or, for a
    /// node of the owner's own, by one of its `Data` delegates. The signed nonce is the
    /// signer's next under {grantNonceKey}: a grant refused (or never sent) blocks no grant to
    /// another node or dataset.
    function recordGrantBySig(
        bytes32 datasetId,
        bytes32 nodeId,
        bytes32 grantHash,
        address signer,
        bytes calldata signature
    ) external {
        uint64 nonce = _useKeyedNonce(signer, grantNonceKey(datasetId, nodeId));
        bytes32 structHash = keccak256(abi.encode(_RECORD_GRANT_TYPEHASH, datasetId, nodeId, grantHash, nonce));
        _checkSignature(signer, structHash, signature);
        _recordGrant(signer, datasetId, nodeId, grantHash);
    }

    /// @notice Revoke a node's grant on a dataset, sent by the owner's governance address.
    function revokeGrant(bytes32 datasetId, bytes32 nodeId) external {
        _revokeGrant(msg.sender, datasetId, nodeId);
    }

    /// @notice Relayed form of {revokeGrant}, signed by the owner's governance key at its next
    /// nonce under {grantNonceKey}, the key its grants to that node on that dataset use.
    function revokeGrantBySig(bytes32 datasetId, bytes32 nodeId, address signer, bytes calldata signature)
        external
    {
        uint64 nonce = _useKeyedNonce(signer, grantNonceKey(datasetId, nodeId));
        bytes32 structHash = keccak256(abi.encode(_REVOKE_GRANT_TYPEHASH, datasetId, nodeId, nonce));
        _checkSignature(signer, structHash, signature);
        _revokeGrant(signer, datasetId, nodeId);
    }

    /// @notice Withdraw a dataset for good: no new versions or grants, sent by the owner's governance address.
    function withdraw(bytes32 datasetId) external {
        _withdraw(msg.sender, datasetId);
    }

    /// @notice Relayed form of {withdraw}, signed by the owner's governance key.
    function withdrawBySig(bytes32 datasetId, address signer, bytes calldata signature) external {
        bytes32 structHash = keccak256(abi.encode(_WITHDRAW_DATASET_TYPEHASH, datasetId, _useNonce(signer)));
        _checkSignature(signer, structHash, signature);
        _withdraw(signer, datasetId);
    }

    /// @dev The registry forgets a removed member's governance address, so a hit is an active member.
    function _governedMember(address account) private view returns (uint256 memberId) {
        memberId = _registry.memberIdOf(account);
        if (memberId == 0) revert DatasetRegistryNotAuthorised(account);
    }

    /// @dev The member `account` governs or is a `Data` delegate of, and whether it governs it.
    /// A delegate outlives its member's removal in the registry, so check the member is active.
    function _dataMember(address account) private view returns (uint256 memberId, bool governs) {
        memberId = _registry.memberIdOf(account);
        if (memberId != 0) return (memberId, true);
        IConsortiumRegistry.Scope scope;
        (memberId, scope) = _registry.delegateOf(account);
        if (memberId == 0 || scope != IConsortiumRegistry.Scope.Data) revert DatasetRegistryNotAuthorised(account);
        if (!_registry.member(memberId).active) revert DatasetRegistryMemberInactive(memberId);
    }

    function _ownedDataset(uint256 memberId, bytes32 datasetId) private view returns (Dataset storage d) {
        d = _datasets[datasetId];
        if (d.latestVersion == 0) revert DatasetRegistryUnknownDataset(datasetId);
        if (d.ownerId != memberId) revert DatasetRegistryNotOwner(datasetId, memberId);
    }

    function _anchorManifest(
        address signer,
        bytes32 datasetId,
        uint32 version,
        bytes32 manifestHash,
        bytes32 previous
    ) private {
        if (datasetId == bytes32(0)) revert DatasetRegistryInvalidDataset(datasetId);
        if (manifestHash == bytes32(0)) revert DatasetRegistryInvalidHash(manifestHash);
        (uint256 memberId,) = _dataMember(signer);
        uint256 idMemberId = uint256(datasetId) >> 128;
        if (idMemberId != memberId) revert DatasetRegistryForeignId(datasetId, idMemberId, memberId);
        Dataset storage d = _datasets[datasetId];
        if (d.withdrawn) revert DatasetRegistryDatasetIsWithdrawn(datasetId);
        if (d.latestVersion != 0 && d.ownerId != memberId) revert DatasetRegistryNotOwner(datasetId, memberId);
        uint32 expected = d.latestVersion + 1;
        if (version != expected) revert DatasetRegistryVersionMismatch(datasetId, expected, version);
        if (previous != d.latestManifest) revert DatasetRegistryPreviousMismatch(datasetId, d.latestManifest, previous);
        if (_versions[datasetId][manifestHash] != 0) revert DatasetRegistryManifestAlreadyAnchored(manifestHash);
        if (version == 1) d.ownerId = memberId;
        d.latestVersion = version;
        d.latestManifest = manifestHash;
        _manifests[datasetId][version] = manifestHash;
        _versions[datasetId][manifestHash] = version;
        emit DatasetAnchored(datasetId, memberId, version, manifestHash, previous);
    }

    function _recordGrant(address signer, bytes32 datasetId, bytes32 nodeId, bytes32 grantHash) private {
        if (grantHash == bytes32(0)) revert DatasetRegistryInvalidHash(grantHash);
        (uint256 ownerId, bool governs) = _dataMember(signer);
        Dataset storage d = _ownedDataset(ownerId, datasetId);
        if (d.withdrawn) revert DatasetRegistryDatasetIsWithdrawn(datasetId);
        IConsortiumRegistry.Node memory n = _registry.node(nodeId);
        // A removed member's nodes stay flagged active in the registry; they get no grants.
        if (n.memberId == 0 || !n.active || !_registry.member(n.memberId).active) revert DatasetRegistryUnknownNode(nodeId);
        // Releasing data to another member is the hospital's decision, not its steward's.
        if (!governs && n.memberId != ownerId) revert DatasetRegistryCrossMemberGrant(signer, nodeId, n.memberId);
        _grants[datasetId][nodeId] = Grant(grantHash, true);
        emit GrantRecorded(datasetId, nodeId, n.memberId, grantHash, n.memberId != ownerId);
    }

    /// @dev Allowed after withdrawal and for nodes the registry no longer lists: revoking only narrows access.
    function _revokeGrant(address signer, bytes32 datasetId, bytes32 nodeId) private {
        _ownedDataset(_governedMember(signer), datasetId);
        Grant storage g = _grants[datasetId][nodeId];
        if (!g.active) revert DatasetRegistryUnknownGrant(datasetId, nodeId);
        g.active = false;
        emit GrantRevoked(datasetId, nodeId);
    }

    function _withdraw(address signer, bytes32 datasetId) private {
        uint256 ownerId = _governedMember(signer);
        Dataset storage d = _ownedDataset(ownerId, datasetId);
        if (d.withdrawn) revert DatasetRegistryDatasetIsWithdrawn(datasetId);
        d.withdrawn = true;
        emit DatasetWithdrawn(datasetId, ownerId);
    }
}

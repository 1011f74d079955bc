// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IConsortiumRegistry} from "./IConsortiumRegistry.sol";
import {MemberSigned} from "./MemberSigned.sol";
import {QuorumVote} from "./QuorumVote.sol";

/// @title MedChain consortium registry
/// @notice Who the members are, their keys, delegates and training nodes, and the
/// proposals (admission, removal, governance rotation) by which hospital members
/// change the membership. Every member action can be sent directly by the member's
/// governance address or relayed with its EIP-712 signature.
contract ConsortiumRegistry is IConsortiumRegistry, MemberSigned, QuorumVote {
    /// @dev A proposal's change; its vote lives in {QuorumVote}.
    struct Change {
        ProposalKind kind;
        uint256 subjectId;
        address account;
        Role role;
        bytes32 dataKey;
        bytes32 nameHash;
        uint256 sponsorId;
    }

    struct Delegation {
        uint256 memberId;
        Scope scope;
    }

    /// @notice Upper bound on members, so every count fits and every loop is bounded.
    uint256 public constant MAX_MEMBERS = 1024;

    bytes32 private constant _APPLICATION_TYPEHASH =
        keccak256("Application(address applicant,uint8 role,bytes32 dataKey,bytes32 nameHash,uint256 nonce)");
    bytes32 private constant _SPONSOR_TYPEHASH = keccak256(
        "SponsorAdmission(address applicant,uint8 role,bytes32 dataKey,bytes32 nameHash,uint256 nonce)"
    );
    bytes32 private constant _VOTE_TYPEHASH =
        keccak256("Vote(uint256 proposalId,bool support,address voter,uint256 nonce)");
    bytes32 private constant _SET_DELEGATE_TYPEHASH =
        keccak256("SetDelegate(address delegate,uint8 scope,bool enabled,uint256 nonce)");
    bytes32 private constant _REGISTER_NODE_TYPEHASH =
        keccak256("RegisterNode(bytes32 nodeId,address signer,bytes32 dataKey,uint256 nonce)");
    bytes32 private constant _REVOKE_NODE_TYPEHASH = keccak256("RevokeNode(bytes32 nodeId,uint256 nonce)");
    bytes32 private constant _ROTATE_NODE_KEY_TYPEHASH =
        keccak256("RotateNodeKey(bytes32 nodeId,bytes32 dataKey,uint256 nonce)");
    bytes32 private constant _PROPOSE_REMOVAL_TYPEHASH = keccak256("ProposeRemoval(uint256 memberId,uint256 nonce)");
    bytes32 private constant _PROPOSE_ROTATION_TYPEHASH =
        keccak256("ProposeRotation(uint256 memberId,address newGovernance,uint256 nonce)");

    Member[] private _members; // index = memberId - 1
    mapping(address governance => uint256 memberId) private _memberIdOf;
    uint256 private _hospitalCount;
    uint64 private _epoch;

    Change[] private _changes; // index = proposalId - 1
    mapping(address account => uint256 proposalId) private _pendingAccount; // applicant or rotation target
    mapping(uint256 memberId => uint256 proposalId) private _pendingChange;

    mapping(address delegate => Delegation) private _delegations;
    mapping(bytes32 nodeId => Node) private _nodes;

    error ConsortiumRegistryInvalidConfiguration();
    error ConsortiumRegistryInvalidRole(uint8 role);
    error ConsortiumRegistryInvalidScope(uint8 scope);
    error ConsortiumRegistryInvalidAddress(address account);
    error ConsortiumRegistryTooManyMembers(uint256 max);
    error ConsortiumRegistryNotMember(address account);
    error ConsortiumRegistryNotHospital(uint256 memberId);
    error ConsortiumRegistryUnknownMember(uint256 memberId);
    error ConsortiumRegistryMemberInactive(uint256 memberId);
    error ConsortiumRegistryAddressInUse(address account);
    error ConsortiumRegistryAddressPending(address account, uint256 proposalId);
    error ConsortiumRegistryChangePending(uint256 memberId, uint256 proposalId);
    error ConsortiumRegistryDelegateTaken(address delegate, uint256 memberId);
    error ConsortiumRegistryUnknownDelegate(address delegate, uint256 memberId);
    error ConsortiumRegistryNodeExists(bytes32 nodeId);
    error ConsortiumRegistryInvalidNode(bytes32 nodeId);
    error ConsortiumRegistryUnknownNode(bytes32 nodeId, uint256 memberId);

    /// @notice Sets the founding members (epoch 0) and the voting rules, fixed for the contract's life.
    /// @param governances Founding members' governance addresses.
    /// @param roles Their roles (1 hospital, 2 diagnostic server); at least one hospital.
    /// @param dataKeys Their X25519 data-encryption public keys.
    /// @param nameHashes keccak256 of their names.
    /// @param quorumBps_ A proposal passes when yes * 10000 > quorumBps * eligible.
    /// @param votingPeriod_ Seconds a proposal stays open.
    constructor(
        address[] memory governances,
        uint8[] memory roles,
        bytes32[] memory dataKeys,
        bytes32[] memory nameHashes,
        uint16 quorumBps_,
        uint64 votingPeriod_
    ) MemberSigned("MedChain Consortium", "1") QuorumVote(quorumBps_, votingPeriod_) {
        uint256 n = governances.length;
        if (n == 0 || roles.length != n || dataKeys.length != n || nameHashes.length != n) {
            revert ConsortiumRegistryInvalidConfiguration();
        }
        if (n > MAX_MEMBERS) revert ConsortiumRegistryTooManyMembers(MAX_MEMBERS);
        for (uint256 i = 0; i < n; ++i) {
            _admit(governances[i], _role(roles[i]), dataKeys[i], nameHashes[i], 0);
        }
        if (_hospitalCount == 0) revert ConsortiumRegistryInvalidConfiguration();
    }

    /// @notice Number of members ever admitted (ids run from 1 to this).
    function memberCount() external view returns (uint256) {
        return _members.length;
    }

    /// @notice Number of active hospital members (the voters of a proposal opened now).
    function hospitalCount() external view returns (uint256) {
        return _hospitalCount;
    }

    /// @notice The member whose governance address is `governance`, or 0.
    function memberIdOf(address governance) external view returns (uint256) {
        return _memberIdOf[governance];
    }

    /// @notice A member by id.
    function member(uint256 memberId) external view returns (Member memory) {
        return _member(memberId);
    }

    /// @notice Number of proposals ever opened (ids run from 1 to this).
    function proposalCount() external view returns (uint256) {
        return _changes.length;
    }

    /// @notice A proposal by id.
    function proposal(uint256 proposalId) external view returns (Proposal memory) {
        Tally storage t = _tally(proposalId);
        Change storage c = _changes[proposalId - 1];
        return Proposal(
            c.kind, uint8(t.status), c.subjectId, c.account, c.role, c.dataKey, c.nameHash, c.sponsorId, t.snapshot,
            t.deadline, t.eligible, t.yes, t.no
        );
    }

    /// @notice The member a delegate acts for, and in which scope.
    function delegateOf(address delegate) external view returns (uint256 memberId, Scope scope) {
        Delegation storage d = _delegations[delegate];
        return (d.memberId, d.scope);
    }

    /// @notice A training node by id.
    function node(bytes32 nodeId) external view returns (Node memory) {
        return _nodes[nodeId];
    }

    /// @notice Open an admission proposal for an applicant who signed its application.
    /// @dev Sent by an active hospital member's governance address.
    function sponsorAdmission(
        address applicant,
        uint8 role,
        bytes32 dataKey,
        bytes32 nameHash,
        bytes calldata applicantSignature
    ) external returns (uint256) {
        return _sponsor(_activeHospital(msg.sender), applicant, role, dataKey, nameHash, applicantSignature);
    }

    /// @notice Relayed form of {sponsorAdmission}, also signed by the sponsor's governance key.
    function sponsorAdmissionBySig(
        address applicant,
        uint8 role,
        bytes32 dataKey,
        bytes32 nameHash,
        bytes calldata applicantSignature,
        address sponsor,
        bytes calldata sponsorSignature
    ) external returns (uint256) {
        bytes32 structHash =
            keccak256(abi.encode(_SPONSOR_TYPEHASH, applicant, role, dataKey, nameHash, _useNonce(sponsor)));
        _checkSignature(sponsor, structHash, sponsorSignature);
        return _sponsor(_activeHospital(sponsor), applicant, role, dataKey, nameHash, applicantSignature);
    }

    /// @notice Propose removing a member; sent by an active hospital member.
    function proposeRemoval(uint256 memberId) external returns (uint256) {
        return _proposeChange(_activeHospital(msg.sender), memberId, ProposalKind.Removal, address(0));
    }

    /// @notice Relayed form of {proposeRemoval}, signed by the proposer's governance key.
    function proposeRemovalBySig(uint256 memberId, address proposer, bytes calldata signature)
        external
        returns (uint256)
    {
        bytes32 structHash = keccak256(abi.encode(_PROPOSE_REMOVAL_TYPEHASH, memberId, _useNonce(proposer)));
        _checkSignature(proposer, structHash, signature);
        return _proposeChange(_activeHospital(proposer), memberId, ProposalKind.Removal, address(0));
    }

    /// @notice Propose moving a member's governance to `newGovernance`; sent by the member itself or a hospital.
    function proposeRotation(uint256 memberId, address newGovernance) external returns (uint256) {
        return _proposeRotation(msg.sender, memberId, newGovernance);
    }

    /// @notice Relayed form of {proposeRotation}, signed by the proposer's governance key.
    function proposeRotationBySig(uint256 memberId, address newGovernance, address proposer, bytes calldata signature)
        external
        returns (uint256)
    {
        bytes32 structHash =
            keccak256(abi.encode(_PROPOSE_ROTATION_TYPEHASH, memberId, newGovernance, _useNonce(proposer)));
        _checkSignature(proposer, structHash, signature);
        return _proposeRotation(proposer, memberId, newGovernance);
    }

    /// @notice Vote on an open proposal; the deciding vote applies the outcome.
    function vote(uint256 proposalId, bool support) external {
        _castVote(proposalId, _activeMemberId(msg.sender), support);
    }

    /// @notice Relayed form of {vote}, signed by the voter's governance key.
    function voteBySig(uint256 proposalId, bool support, address voter, bytes calldata signature) external {
        bytes32 structHash = keccak256(abi.encode(_VOTE_TYPEHASH, proposalId, support, voter, _useNonce(voter)));
        _checkSignature(voter, structHash, signature);
        _castVote(proposalId, _activeMemberId(voter), support);
    }

    /// @notice Reject a proposal whose deadline passed undecided; anyone may call it.
    function finalize(uint256 proposalId) external {
        _finalize(proposalId);
    }

    /// @notice Register (or revoke) an address that may act for the sender's member in one scope.
    function setDelegate(address delegate, uint8 scope, bool enabled) external {
        _setDelegate(_activeMemberId(msg.sender), delegate, scope, enabled);
    }

    /// @notice Relayed form of {setDelegate}.
    function setDelegateBySig(address delegate, uint8 scope, bool enabled, address member_, bytes calldata signature)
        external
    {
        bytes32 structHash =
            keccak256(abi.encode(_SET_DELEGATE_TYPEHASH, delegate, scope, enabled, _useNonce(member_)));
        _checkSignature(member_, structHash, signature);
        _setDelegate(_activeMemberId(member_), delegate, scope, enabled);
    }

    /// @notice Register a training node: its signing address and X25519 data public key.
    function registerNode(bytes32 nodeId, address signer, bytes32 dataKey) external {
        _registerNode(_activeMemberId(msg.sender), nodeId, signer, dataKey);
    }

    /// @notice Relayed form of {registerNode}.
    function registerNodeBySig(
        bytes32 nodeId,
        address signer,
        bytes32 dataKey,
        address member_,
        bytes calldata signature
    ) external {
        bytes32 structHash =
            keccak256(abi.encode(_REGISTER_NODE_TYPEHASH, nodeId, signer, dataKey, _useNonce(member_)));
        _checkSignature(member_, structHash, signature);
        _registerNode(_activeMemberId(member_), nodeId, signer, dataKey);
    }

    /// @notice Revoke one of the sender's training nodes.
    function revokeNode(bytes32 nodeId) external {
        _revokeNode(_activeMemberId(msg.sender), nodeId);
    }

    /// @notice Relayed form of {revokeNode}.
    function revokeNodeBySig(bytes32 nodeId, address member_, bytes calldata signature) external {
        _checkSignature(
            member_, keccak256(abi.encode(_REVOKE_NODE_TYPEHASH, nodeId, _useNonce(member_))), signature
        );
        _revokeNode(_activeMemberId(member_), nodeId);
    }

    /// @notice Replace a node's data-encryption public key.
    function rotateNodeKey(bytes32 nodeId, bytes32 dataKey) external {
        _rotateNodeKey(_activeMemberId(msg.sender), nodeId, dataKey);
    }

    /// @notice Relayed form of {rotateNodeKey}.
    function rotateNodeKeyBySig(bytes32 nodeId, bytes32 dataKey, address member_, bytes calldata signature)
        external
    {
        bytes32 structHash =
            keccak256(abi.encode(_ROTATE_NODE_KEY_TYPEHASH, nodeId, dataKey, _useNonce(member_)));
        _checkSignature(member_, structHash, signature);
        _rotateNodeKey(_activeMemberId(member_), nodeId, dataKey);
    }

    function _role(uint8 role) private pure returns (Role) {
        if (role != uint8(Role.Hospital) && role != uint8(Role.DiagnosticServer)) revert ConsortiumRegistryInvalidRole(role);
        return Role(role);
    }

    function _member(uint256 memberId) private view returns (Member storage) {
        if (memberId == 0 || memberId > _members.length) revert ConsortiumRegistryUnknownMember(memberId);
        return _members[memberId - 1];
    }

    function _activeMemberId(address account) private view returns (uint256 memberId) {
        memberId = _memberIdOf[account];
        if (memberId == 0) revert ConsortiumRegistryNotMember(account);
    }

    function _activeHospital(address account) private view returns (uint256 memberId) {
        memberId = _activeMemberId(account);
        if (_members[memberId - 1].role != Role.Hospital) revert ConsortiumRegistryNotHospital(memberId);
    }

    function _requireUnused(address account) private view {
        if (account == address(0)) revert ConsortiumRegistryInvalidAddress(account);
        if (_memberIdOf[account] != 0 || _delegations[account].memberId != 0) revert ConsortiumRegistryAddressInUse(account);
        uint256 pending = _pendingAccount[account];
        if (pending != 0) revert ConsortiumRegistryAddressPending(account, pending);
    }

    /// @dev Founders join at epoch 0; each later admission starts a new epoch, so a
    /// proposal opened before it does not count the newcomer as a voter.
    function _admit(address governance, Role role, bytes32 dataKey, bytes32 nameHash, uint64 epoch)
        private
        returns (uint256 id)
    {
        if (_members.length >= MAX_MEMBERS) revert ConsortiumRegistryTooManyMembers(MAX_MEMBERS);
        _requireUnused(governance);
        _members.push(Member(governance, role, dataKey, nameHash, true, epoch));
        id = _members.length;
        _memberIdOf[governance] = id;
        if (role == Role.Hospital) ++_hospitalCount;
        emit MemberAdmitted(id, governance, role, dataKey, nameHash, epoch);
    }

    function _open(
        ProposalKind kind,
        uint256 sponsorId,
        uint256 subjectId,
        address account,
        Role role,
        bytes32 dataKey,
        bytes32 nameHash
    ) private returns (uint256 proposalId) {
        _changes.push(Change(kind, subjectId, account, role, dataKey, nameHash, sponsorId));
        proposalId = _changes.length;
        _openVote(proposalId, _epoch, uint32(_hospitalCount));
        _emitOpened(proposalId);
    }

    function _emitOpened(uint256 proposalId) private {
        Change storage c = _changes[proposalId - 1];
        Tally storage t = _tally(proposalId);
        emit ProposalOpened(
            proposalId,
            c.kind,
            c.sponsorId,
            c.subjectId,
            c.account,
            c.role,
            c.dataKey,
            c.nameHash,
            t.snapshot,
            t.eligible,
            t.deadline
        );
    }

    function _sponsor(
        uint256 sponsorId,
        address applicant,
        uint8 role,
        bytes32 dataKey,
        bytes32 nameHash,
        bytes calldata applicantSignature
    ) private returns (uint256 proposalId) {
        Role r = _role(role);
        _requireUnused(applicant);
        bytes32 structHash =
            keccak256(abi.encode(_APPLICATION_TYPEHASH, applicant, role, dataKey, nameHash, _useNonce(applicant)));
        _checkSignature(applicant, structHash, applicantSignature);
        proposalId = _open(ProposalKind.Admission, sponsorId, 0, applicant, r, dataKey, nameHash);
        _pendingAccount[applicant] = proposalId;
    }

    /// @dev Removal records the subject's governance address, rotation the new one.
    function _proposeChange(uint256 sponsorId, uint256 memberId, ProposalKind kind, address newGovernance)
        private
        returns (uint256 proposalId)
    {
        Member storage m = _member(memberId);
        if (!m.active) revert ConsortiumRegistryMemberInactive(memberId);
        uint256 pending = _pendingChange[memberId];
        if (pending != 0) revert ConsortiumRegistryChangePending(memberId, pending);
        address account = kind == ProposalKind.Rotation ? newGovernance : m.governance;
        proposalId = _open(kind, sponsorId, memberId, account, m.role, m.dataKey, m.nameHash);
        _pendingChange[memberId] = proposalId;
        if (kind == ProposalKind.Rotation) _pendingAccount[newGovernance] = proposalId;
    }

    function _proposeRotation(address proposer, uint256 memberId, address newGovernance) private returns (uint256) {
        uint256 proposerId = _activeMemberId(proposer);
        if (proposerId != memberId && _members[proposerId - 1].role != Role.Hospital) revert ConsortiumRegistryNotHospital(proposerId);
        _requireUnused(newGovernance);
        return _proposeChange(proposerId, memberId, ProposalKind.Rotation, newGovernance);
    }

    /// @dev Hospitals that joined by the proposal's epoch; a removed one is stopped earlier,
    /// by {_activeMemberId}.
    function _eligibleAt(uint256 memberId, uint64 snapshot) internal view override returns (bool) {
        Member storage m = _members[memberId - 1];
        return m.role == Role.Hospital && m.joinedEpoch <= snapshot;
    }

    function _decided(uint256 proposalId, bool accepted) internal override {
        Change storage c = _changes[proposalId - 1];
        if (c.kind != ProposalKind.Removal) delete _pendingAccount[c.account];
        if (c.kind != ProposalKind.Admission) delete _pendingChange[c.subjectId];
        if (!accepted) return;
        if (c.kind == ProposalKind.Admission) {
            _admit(c.account, c.role, c.dataKey, c.nameHash, ++_epoch);
        } else if (c.kind == ProposalKind.Removal) {
            _remove(c.subjectId);
        } else {
            _rotate(c.subjectId, c.account);
        }
    }

    function _remove(uint256 memberId) private {
        Member storage m = _members[memberId - 1];
        m.active = false;
        delete _memberIdOf[m.governance];
        if (m.role == Role.Hospital) --_hospitalCount;
        emit MemberRemoved(memberId);
    }

    function _rotate(uint256 memberId, address current) private {
        Member storage m = _members[memberId - 1];
        address previous = m.governance;
        delete _memberIdOf[previous];
        m.governance = current;
        _memberIdOf[current] = memberId;
        emit GovernanceRotated(memberId, previous, current);
    }

    function _setDelegate(uint256 memberId, address delegate, uint8 scope, bool enabled) private {
        if (scope != uint8(Scope.Data) && scope != uint8(Scope.Node)) revert ConsortiumRegistryInvalidScope(scope);
        Delegation storage d = _delegations[delegate];
        if (enabled) {
            if (d.memberId != 0 && d.memberId != memberId) revert ConsortiumRegistryDelegateTaken(delegate, d.memberId);
            if (d.memberId == 0) _requireUnused(delegate);
            d.memberId = memberId;
            d.scope = Scope(scope);
        } else {
            if (d.memberId != memberId || uint8(d.scope) != scope) revert ConsortiumRegistryUnknownDelegate(delegate, memberId);
            delete _delegations[delegate];
        }
        emit DelegateSet(memberId, delegate, Scope(scope), enabled);
    }

    function _registerNode(uint256 memberId, bytes32 nodeId, address signer, bytes32 dataKey) private {
        if (signer == address(0)) revert ConsortiumRegistryInvalidAddress(signer);
        if (nodeId == bytes32(0)) revert ConsortiumRegistryInvalidNode(nodeId);
        if (_nodes[nodeId].memberId != 0) revert ConsortiumRegistryNodeExists(nodeId);
        _nodes[nodeId] = Node(memberId, signer, dataKey, true);
        emit NodeRegistered(memberId, nodeId, signer, dataKey);
    }

    function _ownNode(uint256 memberId, bytes32 nodeId) private view returns (Node storage n) {
        n = _nodes[nodeId];
        if (n.memberId != memberId || !n.active) revert ConsortiumRegistryUnknownNode(nodeId, memberId);
    }

    function _revokeNode(uint256 memberId, bytes32 nodeId) private {
        _ownNode(memberId, nodeId).active = false;
        emit NodeRevoked(memberId, nodeId);
    }

    function _rotateNodeKey(uint256 memberId, bytes32 nodeId, bytes32 dataKey) private {
        _ownNode(memberId, nodeId).dataKey = dataKey;
        emit NodeKeyRotated(memberId, nodeId, dataKey);
    }
}

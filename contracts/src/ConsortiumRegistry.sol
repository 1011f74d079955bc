// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title MedChain consortium registry
/// @notice Who the members are, their keys, delegates and training nodes, and the
/// proposals (admission, removal, governance rotation) by which hospital members
/// change the membership. Every member action can be sent directly by the member's
/// governance address or relayed with its EIP-712 signature.
contract ConsortiumRegistry is EIP712, Nonces {
    enum Role {
        None,
        Hospital,
        DiagnosticServer
    }

    enum Scope {
        None,
        Data,
        Node
    }

    enum ProposalKind {
        Admission,
        Removal,
        Rotation
    }

    enum ProposalStatus {
        None,
        Open,
        Accepted,
        Rejected
    }

    struct Member {
        address governance;
        Role role;
        bytes32 dataKey;
        bytes32 nameHash;
        bool active;
        uint64 joinedEpoch;
    }

    struct Proposal {
        ProposalKind kind;
        ProposalStatus status;
        uint256 subjectId;
        address account;
        Role role;
        bytes32 dataKey;
        bytes32 nameHash;
        uint256 sponsorId;
        uint64 epoch;
        uint64 deadline;
        uint32 eligible;
        uint32 yes;
        uint32 no;
    }

    struct Node {
        uint256 memberId;
        address signer;
        bytes32 dataKey;
        bool active;
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

    uint16 private immutable _quorumBps;
    uint64 private immutable _votingPeriod;

    Member[] private _members; // index = memberId - 1
    mapping(address governance => uint256 memberId) private _memberIdOf;
    uint256 private _hospitalCount;
    uint64 private _epoch;

    Proposal[] private _proposals; // index = proposalId - 1
    mapping(uint256 proposalId => mapping(uint256 memberId => uint8 ballot)) private _ballots;
    mapping(address account => uint256 proposalId) private _pendingAccount; // applicant or rotation target
    mapping(uint256 memberId => uint256 proposalId) private _pendingChange;

    mapping(address delegate => Delegation) private _delegations;
    mapping(bytes32 nodeId => Node) private _nodes;

    event ProposalOpened(
        uint256 indexed proposalId, uint8 kind, uint256 indexed sponsorId, address subject, uint256 eligible, uint64 deadline
    );
    event VoteCast(uint256 indexed proposalId, uint256 indexed memberId, bool support, uint256 yes, uint256 no);
    event ProposalDecided(uint256 indexed proposalId, bool accepted, uint256 yes, uint256 no);
    event MemberAdmitted(
        uint256 indexed memberId, address indexed governance, uint8 role, bytes32 dataKey, bytes32 nameHash
    );
    event MemberRemoved(uint256 indexed memberId);
    event GovernanceRotated(uint256 indexed memberId, address previous, address current);
    event DelegateSet(uint256 indexed memberId, address indexed delegate, uint8 scope, bool enabled);
    event NodeRegistered(uint256 indexed memberId, bytes32 indexed nodeId, address signer, bytes32 dataKey);
    event NodeRevoked(uint256 indexed memberId, bytes32 indexed nodeId);
    event NodeKeyRotated(uint256 indexed memberId, bytes32 indexed nodeId, bytes32 dataKey);

    error InvalidConfiguration();
    error InvalidRole(uint8 role);
    error InvalidScope(uint8 scope);
    error InvalidAddress(address account);
    error TooManyMembers(uint256 max);
    error NotMember(address account);
    error NotHospital(uint256 memberId);
    error UnknownMember(uint256 memberId);
    error MemberInactive(uint256 memberId);
    error AddressInUse(address account);
    error InvalidSignature(address expected, address recovered);
    error AddressPending(address account, uint256 proposalId);
    error ChangePending(uint256 memberId, uint256 proposalId);
    error UnknownProposal(uint256 proposalId);
    error ProposalClosed(uint256 proposalId, uint8 status);
    error ProposalExpired(uint256 proposalId, uint64 deadline);
    error ProposalNotExpired(uint256 proposalId, uint64 deadline);
    error AlreadyVoted(uint256 proposalId, uint256 memberId);
    error NotEligible(uint256 proposalId, uint256 memberId);
    error DelegateTaken(address delegate, uint256 memberId);
    error UnknownDelegate(address delegate, uint256 memberId);
    error NodeExists(bytes32 nodeId);
    error InvalidNode(bytes32 nodeId);
    error UnknownNode(bytes32 nodeId, uint256 memberId);

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
    ) EIP712("MedChain Consortium", "1") {
        uint256 n = governances.length;
        if (
            n == 0 || roles.length != n || dataKeys.length != n || nameHashes.length != n || quorumBps_ == 0
                || quorumBps_ >= 10000 || votingPeriod_ == 0
        ) revert InvalidConfiguration();
        if (n > MAX_MEMBERS) revert TooManyMembers(MAX_MEMBERS);
        _quorumBps = quorumBps_;
        _votingPeriod = votingPeriod_;
        for (uint256 i = 0; i < n; ++i) {
            _admit(governances[i], _role(roles[i]), dataKeys[i], nameHashes[i], 0);
        }
        if (_hospitalCount == 0) revert InvalidConfiguration();
    }

    /// @notice The quorum in basis points of the eligible hospitals.
    function quorumBps() external view returns (uint16) {
        return _quorumBps;
    }

    /// @notice How long a proposal stays open, in seconds.
    function votingPeriod() external view returns (uint64) {
        return _votingPeriod;
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
        return _proposals.length;
    }

    /// @notice A proposal by id.
    function proposal(uint256 proposalId) external view returns (Proposal memory) {
        return _proposal(proposalId);
    }

    /// @notice How a member voted: 0 not yet, 1 yes, 2 no.
    function ballotOf(uint256 proposalId, uint256 memberId) external view returns (uint8) {
        return _ballots[proposalId][memberId];
    }

    /// @notice The member a delegate acts for, and in which scope.
    function delegateOf(address delegate) external view returns (uint256 memberId, uint8 scope) {
        Delegation storage d = _delegations[delegate];
        return (d.memberId, uint8(d.scope));
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
        _vote(proposalId, _activeMemberId(msg.sender), support);
    }

    /// @notice Relayed form of {vote}, signed by the voter's governance key.
    function voteBySig(uint256 proposalId, bool support, address voter, bytes calldata signature) external {
        bytes32 structHash = keccak256(abi.encode(_VOTE_TYPEHASH, proposalId, support, voter, _useNonce(voter)));
        _checkSignature(voter, structHash, signature);
        _vote(proposalId, _activeMemberId(voter), support);
    }

    /// @notice Reject a proposal whose deadline passed undecided; anyone may call it.
    function finalize(uint256 proposalId) external {
        Proposal storage p = _openProposal(proposalId);
        if (block.timestamp < p.deadline) revert ProposalNotExpired(proposalId, p.deadline);
        _decide(proposalId, p, false);
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
        if (role != uint8(Role.Hospital) && role != uint8(Role.DiagnosticServer)) revert InvalidRole(role);
        return Role(role);
    }

    function _member(uint256 memberId) private view returns (Member storage) {
        if (memberId == 0 || memberId > _members.length) revert UnknownMember(memberId);
        return _members[memberId - 1];
    }

    function _proposal(uint256 proposalId) private view returns (Proposal storage) {
        if (proposalId == 0 || proposalId > _proposals.length) revert UnknownProposal(proposalId);
        return _proposals[proposalId - 1];
    }

    function _openProposal(uint256 proposalId) private view returns (Proposal storage p) {
        p = _proposal(proposalId);
        if (p.status != ProposalStatus.Open) revert ProposalClosed(proposalId, uint8(p.status));
    }

    function _activeMemberId(address account) private view returns (uint256 memberId) {
        memberId = _memberIdOf[account];
        if (memberId == 0) revert NotMember(account);
    }

    function _activeHospital(address account) private view returns (uint256 memberId) {
        memberId = _activeMemberId(account);
        if (_members[memberId - 1].role != Role.Hospital) revert NotHospital(memberId);
    }

    function _checkSignature(address expected, bytes32 structHash, bytes calldata signature) private view {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(_hashTypedDataV4(structHash), signature);
        if (err != ECDSA.RecoverError.NoError || recovered != expected) {
            revert InvalidSignature(expected, recovered);
        }
    }

    function _requireUnused(address account) private view {
        if (account == address(0)) revert InvalidAddress(account);
        if (_memberIdOf[account] != 0 || _delegations[account].memberId != 0) revert AddressInUse(account);
        uint256 pending = _pendingAccount[account];
        if (pending != 0) revert AddressPending(account, pending);
    }

    /// @dev Founders join at epoch 0; each later admission starts a new epoch, so a
    /// proposal opened before it does not count the newcomer as a voter.
    function _admit(address governance, Role role, bytes32 dataKey, bytes32 nameHash, uint64 epoch)
        private
        returns (uint256 id)
    {
        if (_members.length >= MAX_MEMBERS) revert TooManyMembers(MAX_MEMBERS);
        _requireUnused(governance);
        _members.push(Member(governance, role, dataKey, nameHash, true, epoch));
        id = _members.length;
        _memberIdOf[governance] = id;
        if (role == Role.Hospital) ++_hospitalCount;
        emit MemberAdmitted(id, governance, uint8(role), dataKey, nameHash);
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
        uint64 deadline = uint64(block.timestamp) + _votingPeriod;
        uint32 eligible = uint32(_hospitalCount);
        _proposals.push(
            Proposal(
                kind, ProposalStatus.Open, subjectId, account, role, dataKey, nameHash, sponsorId, _epoch, deadline,
                eligible, 0, 0
            )
        );
        proposalId = _proposals.length;
        emit ProposalOpened(proposalId, uint8(kind), sponsorId, account, eligible, deadline);
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
        if (!m.active) revert MemberInactive(memberId);
        uint256 pending = _pendingChange[memberId];
        if (pending != 0) revert ChangePending(memberId, pending);
        address account = kind == ProposalKind.Rotation ? newGovernance : m.governance;
        proposalId = _open(kind, sponsorId, memberId, account, m.role, m.dataKey, m.nameHash);
        _pendingChange[memberId] = proposalId;
        if (kind == ProposalKind.Rotation) _pendingAccount[newGovernance] = proposalId;
    }

    function _proposeRotation(address proposer, uint256 memberId, address newGovernance) private returns (uint256) {
        uint256 proposerId = _activeMemberId(proposer);
        if (proposerId != memberId && _members[proposerId - 1].role != Role.Hospital) revert NotHospital(proposerId);
        _requireUnused(newGovernance);
        return _proposeChange(proposerId, memberId, ProposalKind.Rotation, newGovernance);
    }

    function _passes(uint256 yes, uint256 eligible) private view returns (bool) {
        return yes * 10000 > uint256(_quorumBps) * eligible;
    }

    function _vote(uint256 proposalId, uint256 memberId, bool support) private {
        Proposal storage p = _openProposal(proposalId);
        if (block.timestamp >= p.deadline) revert ProposalExpired(proposalId, p.deadline);
        Member storage m = _members[memberId - 1];
        if (m.role != Role.Hospital || m.joinedEpoch > p.epoch) revert NotEligible(proposalId, memberId);
        if (_ballots[proposalId][memberId] != 0) revert AlreadyVoted(proposalId, memberId);
        _ballots[proposalId][memberId] = support ? 1 : 2;
        if (support) ++p.yes;
        else ++p.no;
        emit VoteCast(proposalId, memberId, support, p.yes, p.no);
        if (_passes(p.yes, p.eligible)) {
            _decide(proposalId, p, true);
        } else if (!_passes(uint256(p.eligible) - p.no, p.eligible)) {
            // Even if every remaining eligible member voted yes, the quorum is out of reach.
            _decide(proposalId, p, false);
        }
    }

    function _decide(uint256 proposalId, Proposal storage p, bool accepted) private {
        if (p.kind != ProposalKind.Removal) delete _pendingAccount[p.account];
        if (p.kind != ProposalKind.Admission) delete _pendingChange[p.subjectId];
        p.status = accepted ? ProposalStatus.Accepted : ProposalStatus.Rejected;
        emit ProposalDecided(proposalId, accepted, p.yes, p.no);
        if (!accepted) return;
        if (p.kind == ProposalKind.Admission) {
            _admit(p.account, p.role, p.dataKey, p.nameHash, ++_epoch);
        } else if (p.kind == ProposalKind.Removal) {
            _remove(p.subjectId);
        } else {
            _rotate(p.subjectId, p.account);
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
        if (scope != uint8(Scope.Data) && scope != uint8(Scope.Node)) revert InvalidScope(scope);
        Delegation storage d = _delegations[delegate];
        if (enabled) {
            if (d.memberId != 0 && d.memberId != memberId) revert DelegateTaken(delegate, d.memberId);
            if (d.memberId == 0) _requireUnused(delegate);
            d.memberId = memberId;
            d.scope = Scope(scope);
        } else {
            if (d.memberId != memberId || uint8(d.scope) != scope) revert UnknownDelegate(delegate, memberId);
            delete _delegations[delegate];
        }
        emit DelegateSet(memberId, delegate, scope, enabled);
    }

    function _registerNode(uint256 memberId, bytes32 nodeId, address signer, bytes32 dataKey) private {
        if (signer == address(0)) revert InvalidAddress(signer);
        if (nodeId == bytes32(0)) revert InvalidNode(nodeId);
        if (_nodes[nodeId].memberId != 0) revert NodeExists(nodeId);
        _nodes[nodeId] = Node(memberId, signer, dataKey, true);
        emit NodeRegistered(memberId, nodeId, signer, dataKey);
    }

    function _ownNode(uint256 memberId, bytes32 nodeId) private view returns (Node storage n) {
        n = _nodes[nodeId];
        if (n.memberId != memberId || !n.active) revert UnknownNode(nodeId, memberId);
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

// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title MedChain consortium registry: its types, events and views
/// @notice What other contracts (the dataset registry, federated rounds) read membership
/// through, and what anyone needs to decode the registry's events and rebuild its state.
/// @dev Enums travel as uint8 in the ABI.
interface IConsortiumRegistry {
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

    struct Member {
        address governance;
        Role role;
        bytes32 dataKey;
        bytes32 nameHash;
        bool active;
        uint64 joinedEpoch;
    }

    /// @dev `status` is the stored {QuorumVote-VoteState} (None, Open, Accepted, Rejected);
    /// `epoch` is the vote's snapshot: hospitals that joined later do not vote on it.
    struct Proposal {
        ProposalKind kind;
        uint8 status;
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

    /// @notice A proposal opened, with everything it would change and the vote's snapshot.
    /// @param subjectId The member removed or rotated; 0 for an admission.
    /// @param account The applicant (admission), the subject's governance address (removal)
    /// or the new governance address (rotation).
    /// @param role The applicant's or subject's role.
    /// @param dataKey The applicant's or subject's data-encryption public key.
    /// @param nameHash The applicant's or subject's name hash.
    /// @param epoch Hospitals admitted in a later epoch do not vote on it.
    /// @param eligible The active hospitals at opening: the quorum's denominator.
    event ProposalOpened(
        uint256 indexed proposalId,
        ProposalKind kind,
        uint256 indexed sponsorId,
        uint256 subjectId,
        address account,
        Role role,
        bytes32 dataKey,
        bytes32 nameHash,
        uint64 epoch,
        uint256 eligible,
        uint64 deadline
    );
    /// @param joinedEpoch 0 for founders; each later admission starts a new epoch.
    event MemberAdmitted(
        uint256 indexed memberId,
        address indexed governance,
        Role role,
        bytes32 dataKey,
        bytes32 nameHash,
        uint64 joinedEpoch
    );
    event MemberRemoved(uint256 indexed memberId);
    event GovernanceRotated(uint256 indexed memberId, address previous, address current);
    /// @param scope Meaningful when `enabled`; a revocation repeats the scope revoked.
    event DelegateSet(uint256 indexed memberId, address indexed delegate, Scope scope, bool enabled);
    event NodeRegistered(uint256 indexed memberId, bytes32 indexed nodeId, address signer, bytes32 dataKey);
    event NodeRevoked(uint256 indexed memberId, bytes32 indexed nodeId);
    event NodeKeyRotated(uint256 indexed memberId, bytes32 indexed nodeId, bytes32 dataKey);

    /// @notice Number of members ever admitted (ids run from 1 to this).
    function memberCount() external view returns (uint256);

    /// @notice Number of active hospital members (the voters of a proposal opened now).
    function hospitalCount() external view returns (uint256);

    /// @notice The active member whose governance address is `governance`, or 0.
    function memberIdOf(address governance) external view returns (uint256);

    /// @notice A member by id.
    function member(uint256 memberId) external view returns (Member memory);

    /// @notice The member a delegate acts for (0: none), and in which scope.
    function delegateOf(address delegate) external view returns (uint256 memberId, Scope scope);

    /// @notice A training node by id (member 0: unknown).
    function node(bytes32 nodeId) external view returns (Node memory);

    /// @notice Number of proposals ever opened (ids run from 1 to this).
    function proposalCount() external view returns (uint256);

    /// @notice A proposal by id.
    function proposal(uint256 proposalId) external view returns (Proposal memory);
}
